"""The importer's writes: wanted sets, bytes held, removals, the set cleaner, run records.

Each writing function is one transaction on the writer (``repo_resources.atomic``),
shielded from cancellation, so a reader sees an import's rows only once committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.ops.logging import get_logger, short_sha
from region.db.connection import Connection, Database
from region.db.resources import COMPLETE_SETS, SYNCED, UPLOADED, ResourceKey, atomic
from region.db.timestamps import now_iso

log = get_logger("resources")


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


async def write_wanted(
    db: Database, wanted: Iterable[WantedSet], have: Mapping[str, int]
) -> set[ResourceKey]:
    """Create or update the resources, sets and files an import wants.

    ``have`` maps sha256 to the bytes already held (the size when stored, a
    partial's length otherwise). Files a set no longer lists are removed; an
    uploaded resource of the same name and architecture is left alone.
    Returns the keys of resources created just now.
    """

    async def work(conn: Connection) -> set[ResourceKey]:
        created: set[ResourceKey] = set()
        now = now_iso()
        for ws in wanted:
            async with conn.execute(
                "SELECT id, rtype FROM boot_resources WHERE name = ? AND architecture = ?", ws.key
            ) as cur:
                row = await cur.fetchone()
            fields = (ws.kflavor, ws.bootloader_type, int(ws.rolling), json.dumps(ws.extra))
            if row is None:
                cur = await conn.execute(
                    "INSERT INTO boot_resources (rtype, name, architecture, kflavor, "
                    "bootloader_type, rolling, extra, created, updated) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (SYNCED, *ws.key, *fields, now, now),
                )
                resource_id = cur.lastrowid
                created.add(ws.key)
            elif row["rtype"] == UPLOADED:
                log.warning(
                    "synced_image_clashes_with_upload", name=ws.name, architecture=ws.architecture
                )
                continue
            else:
                resource_id = row["id"]
                await conn.execute(
                    "UPDATE boot_resources SET rtype = ?, kflavor = ?, bootloader_type = ?, "
                    "rolling = ?, extra = ?, updated = ? WHERE id = ?",
                    (SYNCED, *fields, now, resource_id),
                )
            await _write_set(conn, resource_id, ws, have, now)
        return created

    return await atomic(db, work)


async def _write_set(
    conn: Connection,
    resource_id: int | None,
    ws: WantedSet,
    have: Mapping[str, int],
    now: str,
) -> None:
    cur = await conn.execute(
        "INSERT INTO boot_resource_sets (resource_id, version, label, created) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (resource_id, version) DO UPDATE SET "
        "label = excluded.label RETURNING id",
        (resource_id, ws.version, ws.label, now),
    )
    set_id = (await cur.fetchone())[0]  # type: ignore[index]
    await cur.close()
    async with conn.execute(
        "SELECT filename, sha256 FROM boot_resource_files WHERE set_id = ?", (set_id,)
    ) as cur:
        before = {row["filename"]: row["sha256"] for row in await cur.fetchall()}
    for f in ws.files:
        if before.get(f.filename, f.sha256) != f.sha256:
            log.warning(
                "file_hash_changed",
                resource=ws.name,
                architecture=ws.architecture,
                version=ws.version,
                filename=f.filename,
                previous=short_sha(before[f.filename]),
                sha256=short_sha(f.sha256),
            )
    await conn.executemany(
        "INSERT INTO boot_resource_files (set_id, filename, filetype, sha256, size, "
        "bytes_done, extra) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (set_id, filename) "
        "DO UPDATE SET filetype = excluded.filetype, sha256 = excluded.sha256, "
        "size = excluded.size, bytes_done = excluded.bytes_done, extra = excluded.extra",
        [
            (
                set_id,
                f.filename,
                f.filetype,
                f.sha256,
                f.size,
                min(have.get(f.sha256, 0), f.size),
                json.dumps(f.extra),
            )
            for f in ws.files
        ],
    )
    gone = [(set_id, name) for name in before if name not in {f.filename for f in ws.files}]
    await conn.executemany(
        "DELETE FROM boot_resource_files WHERE set_id = ? AND filename = ?", gone
    )


async def set_bytes_done(db: Database, done: Mapping[str, int]) -> None:
    """Record the bytes held per sha256 on every file row not yet complete."""
    if done:
        await atomic(
            db,
            lambda conn: conn.executemany(
                "UPDATE boot_resource_files SET bytes_done = "
                "CASE WHEN ? < size THEN ? ELSE size END "
                "WHERE sha256 = ? AND bytes_done < size",
                [(n, n, sha) for sha, n in done.items()],
            ),
        )


async def delete_resources(db: Database, ids: Iterable[int]) -> int:
    """Delete resources (their sets and files go with them); returns how many."""
    rows = [(i,) for i in ids]
    await atomic(db, lambda conn: conn.executemany("DELETE FROM boot_resources WHERE id = ?", rows))
    return len(rows)


async def clean_sets(db: Database) -> int:
    """Keep only the newest complete set of each synced resource.

    Incomplete sets go, older complete sets go, and synced resources left
    without a set go. Returns the number of sets deleted.
    """

    async def work(conn: Connection) -> int:
        cur = await conn.execute(
            f"DELETE FROM boot_resource_sets WHERE resource_id IN "  # noqa: S608
            f"(SELECT id FROM boot_resources WHERE rtype = {SYNCED}) AND id NOT IN "
            f"(SELECT MAX(id) FROM boot_resource_sets WHERE id IN ({COMPLETE_SETS}) "
            "GROUP BY resource_id)"
        )
        await conn.execute(
            f"DELETE FROM boot_resources WHERE rtype = {SYNCED} AND id NOT IN "  # noqa: S608
            "(SELECT resource_id FROM boot_resource_sets)"
        )
        return cur.rowcount

    return await atomic(db, work)


async def referenced_sha256(db: Database) -> set[str]:
    """Every sha256 any file row names (what blob GC must keep)."""
    async with (
        db.read() as conn,
        conn.execute("SELECT DISTINCT sha256 FROM boot_resource_files") as cur,
    ):
        return {row[0] for row in await cur.fetchall()}


async def start_run(db: Database) -> int:
    """Open an ``import_runs`` row; returns its id."""
    cur = await atomic(
        db,
        lambda conn: conn.execute(
            "INSERT INTO import_runs (started) VALUES (?) RETURNING id", (now_iso(),)
        ),
    )
    return cur.lastrowid or 0


async def finish_run(db: Database, run_id: int, outcome: str, summary: Mapping[str, Any]) -> None:
    """Close an ``import_runs`` row with its outcome and summary."""
    await atomic(
        db,
        lambda conn: conn.execute(
            "UPDATE import_runs SET finished = ?, outcome = ?, summary = ? WHERE id = ?",
            (now_iso(), outcome, json.dumps(summary), run_id),
        ),
    )


async def last_ok_import(db: Database) -> str | None:
    """When the last import that ended ``ok`` finished (None if none has)."""
    async with (
        db.read() as conn,
        conn.execute("SELECT MAX(finished) FROM import_runs WHERE outcome = 'ok'") as cur,
    ):
        row = await cur.fetchone()
    return None if row is None or row[0] is None else str(row[0])
