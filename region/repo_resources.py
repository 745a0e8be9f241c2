"""Boot resources, their sets and files, and the import history, in the region database.

A file's ``bytes_done`` equals its ``size`` exactly when its blob is in the
store; a set is complete when it has files and all of them are. Writing
functions run as one transaction that is shielded from cancellation, so a
stopped import never leaves half a transaction on the shared connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiosqlite

from common.logging import get_logger, short_sha
from region.api.http import now_iso
from region.db import transaction

log = get_logger("resources")

T = TypeVar("T")

SYNCED, GENERATED, UPLOADED = 0, 1, 2
ResourceKey = tuple[str, str]  # (name, architecture)

_COMPLETE_SETS = ("SELECT set_id FROM boot_resource_files GROUP BY set_id "
                  "HAVING SUM(bytes_done >= size) = COUNT(*)")


@dataclass(frozen=True)
class WantedFile:
    """A file an import wants in a set."""

    filename: str
    filetype: str
    sha256: str
    size: int
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WantedSet:
    """A synced resource and the one set (version) an import wants it to have."""

    name: str
    architecture: str
    kflavor: str | None
    bootloader_type: str | None
    rolling: bool
    extra: Mapping[str, Any]
    version: str
    label: str
    files: tuple[WantedFile, ...]

    @property
    def key(self) -> ResourceKey:
        """(name, architecture), unique among resources."""
        return (self.name, self.architecture)


@dataclass(frozen=True)
class ResourceRow:
    """A boot resource; ``extra`` holds subarches, title and the stream's other fields."""

    id: int
    rtype: int
    name: str
    architecture: str
    kflavor: str | None
    bootloader_type: str | None
    rolling: bool
    base_image: str
    extra: Mapping[str, Any]

    @property
    def key(self) -> ResourceKey:
        """(name, architecture)."""
        return (self.name, self.architecture)


@dataclass(frozen=True)
class FileRow:
    """A file of a set."""

    filename: str
    filetype: str
    sha256: str
    size: int
    bytes_done: int
    extra: Mapping[str, Any]


@dataclass(frozen=True)
class SetRow:
    """A set (version) of a resource with its files."""

    id: int
    version: str
    label: str
    files: tuple[FileRow, ...]

    @property
    def total(self) -> int:
        """Bytes the set needs."""
        return sum(f.size for f in self.files)

    @property
    def done(self) -> int:
        """Bytes the set has."""
        return sum(min(f.bytes_done, f.size) for f in self.files)

    @property
    def complete(self) -> bool:
        """True when it has files and every one is stored."""
        return bool(self.files) and all(f.bytes_done >= f.size for f in self.files)


async def atomic(conn: aiosqlite.Connection, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` as one transaction (region.db.transaction), shielded from cancellation."""
    async def run() -> T:
        async with transaction(conn):
            return await work()
    return await asyncio.shield(run())


def _resource(row: aiosqlite.Row) -> ResourceRow:
    return ResourceRow(id=row["id"], rtype=row["rtype"], name=row["name"],
                       architecture=row["architecture"], kflavor=row["kflavor"],
                       bootloader_type=row["bootloader_type"], rolling=bool(row["rolling"]),
                       base_image=row["base_image"], extra=json.loads(row["extra"]))


def _file(row: aiosqlite.Row) -> FileRow:
    return FileRow(filename=row["filename"], filetype=row["filetype"], sha256=row["sha256"],
                   size=row["size"], bytes_done=row["bytes_done"],
                   extra=json.loads(row["fextra"]))


def _sets(rows: Iterable[aiosqlite.Row]) -> dict[int, tuple[SetRow, int]]:
    """Group (set, file) rows into sets, keyed by set id, with their resource id."""
    grouped: dict[int, tuple[int, str, str, list[FileRow]]] = {}
    for row in rows:
        entry = grouped.setdefault(row["sid"], (row["rid"], row["version"], row["label"], []))
        if row["filename"] is not None:
            entry[3].append(_file(row))
    return {sid: (SetRow(id=sid, version=v, label=lbl, files=tuple(files)), rid)
            for sid, (rid, v, lbl, files) in grouped.items()}


_SET_FILES = ("SELECT s.resource_id AS rid, s.id AS sid, s.version, s.label, f.filename, "
              "f.filetype, f.sha256, f.size, f.bytes_done, f.extra AS fextra "
              "FROM boot_resource_sets s LEFT JOIN boot_resource_files f ON f.set_id = s.id ")


async def get_resource(conn: aiosqlite.Connection,
                       resource_id: int) -> tuple[ResourceRow, list[SetRow]] | None:
    """A resource and its sets, newest first; None if unknown."""
    async with conn.execute("SELECT * FROM boot_resources WHERE id = ?", (resource_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    async with conn.execute(_SET_FILES + "WHERE s.resource_id = ? ORDER BY s.id DESC, "
                            "f.filename", (resource_id,)) as cur:
        sets = _sets(await cur.fetchall())
    return _resource(row), [s for s, _rid in sets.values()]


@dataclass(frozen=True)
class SetTotals:
    """Byte counts of a resource's newest set, for listings."""

    files: int
    total: int
    done: int
    complete: bool


async def list_resources(conn: aiosqlite.Connection, rtype: int | None = None,
                         ) -> list[tuple[ResourceRow, SetTotals | None]]:
    """Resources (of ``rtype``, or all) with their newest set's totals, in one query.

    Ordered by type, name and architecture as MAAS lists them.
    """
    async with conn.execute(
            "WITH latest AS (SELECT resource_id, MAX(id) AS set_id FROM boot_resource_sets "
            "GROUP BY resource_id), totals AS (SELECT f.set_id, COUNT(*) AS files, "
            "SUM(f.size) AS total, SUM(MIN(f.bytes_done, f.size)) AS done, "
            "SUM(f.bytes_done >= f.size) AS stored FROM boot_resource_files f "
            "JOIN latest l ON l.set_id = f.set_id GROUP BY f.set_id) "
            "SELECT r.*, l.set_id, t.files, t.total, t.done, t.stored FROM boot_resources r "
            "LEFT JOIN latest l ON l.resource_id = r.id "
            "LEFT JOIN totals t ON t.set_id = l.set_id "
            "WHERE ? IS NULL OR r.rtype = ? ORDER BY r.rtype, r.name, r.architecture",
            (rtype, rtype)) as cur:
        rows = await cur.fetchall()
    return [(_resource(row), None if row["set_id"] is None else SetTotals(
        files=row["files"] or 0, total=row["total"] or 0, done=row["done"] or 0,
        complete=bool(row["files"]) and row["stored"] == row["files"])) for row in rows]


async def delete_resource(conn: aiosqlite.Connection, resource_id: int) -> bool:
    """Delete one resource with its sets and files; False if it did not exist."""
    cur = await atomic(conn, lambda: conn.execute("DELETE FROM boot_resources WHERE id = ?",
                                                  (resource_id,)))
    return cur.rowcount > 0


async def list_synced(conn: aiosqlite.Connection) -> list[ResourceRow]:
    """Every synced resource, by name and architecture."""
    async with conn.execute("SELECT * FROM boot_resources WHERE rtype = ? "
                            "ORDER BY name, architecture", (SYNCED,)) as cur:
        return [_resource(row) for row in await cur.fetchall()]


async def complete_sets(conn: aiosqlite.Connection) -> list[tuple[ResourceRow, list[SetRow]]]:
    """Every resource with at least one complete set, with only its complete sets."""
    async with conn.execute(
            _SET_FILES + f"WHERE s.id IN ({_COMPLETE_SETS}) "
            "ORDER BY s.resource_id, s.id, f.filename") as cur:
        sets = _sets(await cur.fetchall())
    by_resource: dict[int, list[SetRow]] = {}
    for set_row, rid in sets.values():
        by_resource.setdefault(rid, []).append(set_row)
    async with conn.execute("SELECT * FROM boot_resources ORDER BY name, architecture") as cur:
        resources = [_resource(row) for row in await cur.fetchall()]
    return [(r, by_resource[r.id]) for r in resources if r.id in by_resource]


async def write_wanted(conn: aiosqlite.Connection, wanted: Iterable[WantedSet],
                       have: Mapping[str, int]) -> set[ResourceKey]:
    """Create or update the resources, sets and files an import wants.

    ``have`` maps sha256 to the bytes already held (the size when stored, a
    partial's length otherwise). Files a set no longer lists are removed; an
    uploaded resource of the same name and architecture is left alone.
    Returns the keys of resources created just now.
    """
    async def work() -> set[ResourceKey]:
        created: set[ResourceKey] = set()
        now = now_iso()
        for ws in wanted:
            async with conn.execute("SELECT id, rtype FROM boot_resources WHERE name = ? AND "
                                    "architecture = ?", ws.key) as cur:
                row = await cur.fetchone()
            fields = (ws.kflavor, ws.bootloader_type, int(ws.rolling), json.dumps(ws.extra))
            if row is None:
                cur = await conn.execute(
                    "INSERT INTO boot_resources (rtype, name, architecture, kflavor, "
                    "bootloader_type, rolling, extra, created, updated) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?)", (SYNCED, *ws.key, *fields, now, now))
                resource_id = cur.lastrowid
                created.add(ws.key)
            elif row["rtype"] == UPLOADED:
                log.warning("synced_image_clashes_with_upload", name=ws.name,
                            architecture=ws.architecture)
                continue
            else:
                resource_id = row["id"]
                await conn.execute(
                    "UPDATE boot_resources SET rtype = ?, kflavor = ?, bootloader_type = ?, "
                    "rolling = ?, extra = ?, updated = ? WHERE id = ?",
                    (SYNCED, *fields, now, resource_id))
            await _write_set(conn, resource_id, ws, have, now)
        return created
    return await atomic(conn, work)


async def _write_set(conn: aiosqlite.Connection, resource_id: int | None, ws: WantedSet,
                     have: Mapping[str, int], now: str) -> None:
    cur = await conn.execute(
        "INSERT INTO boot_resource_sets (resource_id, version, label, created) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (resource_id, version) DO UPDATE SET "
        "label = excluded.label RETURNING id", (resource_id, ws.version, ws.label, now))
    set_id = (await cur.fetchone())[0]  # type: ignore[index]
    await cur.close()
    async with conn.execute("SELECT filename, sha256 FROM boot_resource_files "
                            "WHERE set_id = ?", (set_id,)) as cur:
        before = {row["filename"]: row["sha256"] for row in await cur.fetchall()}
    for f in ws.files:
        if before.get(f.filename, f.sha256) != f.sha256:
            log.warning("file_hash_changed", resource=ws.name, architecture=ws.architecture,
                        version=ws.version, filename=f.filename,
                        previous=short_sha(before[f.filename]), sha256=short_sha(f.sha256))
    await conn.executemany(
        "INSERT INTO boot_resource_files (set_id, filename, filetype, sha256, size, "
        "bytes_done, extra) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (set_id, filename) "
        "DO UPDATE SET filetype = excluded.filetype, sha256 = excluded.sha256, "
        "size = excluded.size, bytes_done = excluded.bytes_done, extra = excluded.extra",
        [(set_id, f.filename, f.filetype, f.sha256, f.size, min(have.get(f.sha256, 0), f.size),
          json.dumps(f.extra)) for f in ws.files])
    gone = [(set_id, name) for name in before if name not in {f.filename for f in ws.files}]
    await conn.executemany("DELETE FROM boot_resource_files WHERE set_id = ? AND filename = ?",
                           gone)


async def set_bytes_done(conn: aiosqlite.Connection, done: Mapping[str, int]) -> None:
    """Record the bytes held per sha256 on every file row not yet complete."""
    if done:
        await atomic(conn, lambda: conn.executemany(
            "UPDATE boot_resource_files SET bytes_done = MIN(?, size) "
            "WHERE sha256 = ? AND bytes_done < size", [(n, sha) for sha, n in done.items()]))


async def delete_resources(conn: aiosqlite.Connection, ids: Iterable[int]) -> int:
    """Delete resources (their sets and files go with them); returns how many."""
    rows = [(i,) for i in ids]
    await atomic(conn, lambda: conn.executemany("DELETE FROM boot_resources WHERE id = ?", rows))
    return len(rows)


async def clean_sets(conn: aiosqlite.Connection) -> int:
    """Keep only the newest complete set of each synced resource.

    Incomplete sets go, older complete sets go, and synced resources left
    without a set go. Returns the number of sets deleted.
    """
    async def work() -> int:
        cur = await conn.execute(
            f"DELETE FROM boot_resource_sets WHERE resource_id IN "  # noqa: S608
            f"(SELECT id FROM boot_resources WHERE rtype = {SYNCED}) AND id NOT IN "
            f"(SELECT MAX(id) FROM boot_resource_sets WHERE id IN ({_COMPLETE_SETS}) "
            "GROUP BY resource_id)")
        await conn.execute(f"DELETE FROM boot_resources WHERE rtype = {SYNCED} AND id NOT IN "  # noqa: S608
                           "(SELECT resource_id FROM boot_resource_sets)")
        return cur.rowcount
    return await atomic(conn, work)


async def referenced_sha256(conn: aiosqlite.Connection) -> set[str]:
    """Every sha256 any file row names (what blob GC must keep)."""
    async with conn.execute("SELECT DISTINCT sha256 FROM boot_resource_files") as cur:
        return {row[0] for row in await cur.fetchall()}


async def start_run(conn: aiosqlite.Connection) -> int:
    """Open an ``import_runs`` row; returns its id."""
    cur = await atomic(conn, lambda: conn.execute(
        "INSERT INTO import_runs (started) VALUES (?)", (now_iso(),)))
    return cur.lastrowid or 0


async def finish_run(conn: aiosqlite.Connection, run_id: int, outcome: str,
                     summary: Mapping[str, Any]) -> None:
    """Close an ``import_runs`` row with its outcome and summary."""
    await atomic(conn, lambda: conn.execute(
        "UPDATE import_runs SET finished = ?, outcome = ?, summary = ? WHERE id = ?",
        (now_iso(), outcome, json.dumps(summary), run_id)))
