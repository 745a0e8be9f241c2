"""Boot resources, their sets and files, in the region database: rows and reads.

A file's ``bytes_done`` equals its ``size`` exactly when its blob is in the
store; a set is complete when it has files and all of them are. Functions take
the :class:`~region.db.connection.Database`: reads run on a reader (the last
committed state, one snapshot per call), writes as one transaction shielded
from cancellation (:func:`atomic`), so a stopped import finishes or undoes the
transaction it began. The importer's writes are in region/db/imports.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from common.ops.logging import get_logger
from region.db.connection import Connection, Database, Row

log = get_logger("resources")

T = TypeVar("T")

SYNCED, GENERATED, UPLOADED = 0, 1, 2
ResourceKey = tuple[str, str]  # (name, architecture)

COMPLETE_SETS = (
    "SELECT set_id FROM boot_resource_files GROUP BY set_id "
    "HAVING SUM(CASE WHEN bytes_done >= size THEN 1 ELSE 0 END) = COUNT(*)"
)


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


async def atomic(db: Database, work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run ``work(conn)`` as one write transaction, shielded from cancellation.

    ``conn`` is the writer: what ``work`` reads through it includes what it wrote.
    """

    async def run() -> T:
        async with db.write() as conn:
            return await work(conn)

    return await asyncio.shield(run())


def _resource(row: Row) -> ResourceRow:
    return ResourceRow(
        id=row["id"],
        rtype=row["rtype"],
        name=row["name"],
        architecture=row["architecture"],
        kflavor=row["kflavor"],
        bootloader_type=row["bootloader_type"],
        rolling=bool(row["rolling"]),
        base_image=row["base_image"],
        extra=json.loads(row["extra"]),
    )


def _file(row: Row) -> FileRow:
    return FileRow(
        filename=row["filename"],
        filetype=row["filetype"],
        sha256=row["sha256"],
        size=row["size"],
        bytes_done=row["bytes_done"],
        extra=json.loads(row["fextra"]),
    )


def _sets(rows: Iterable[Row]) -> dict[int, tuple[SetRow, int]]:
    """Group (set, file) rows into sets, keyed by set id, with their resource id."""
    grouped: dict[int, tuple[int, str, str, list[FileRow]]] = {}
    for row in rows:
        entry = grouped.setdefault(row["sid"], (row["rid"], row["version"], row["label"], []))
        if row["filename"] is not None:
            entry[3].append(_file(row))
    return {
        sid: (SetRow(id=sid, version=v, label=lbl, files=tuple(files)), rid)
        for sid, (rid, v, lbl, files) in grouped.items()
    }


_SET_FILES = (
    "SELECT s.resource_id AS rid, s.id AS sid, s.version, s.label, f.filename, "
    "f.filetype, f.sha256, f.size, f.bytes_done, f.extra AS fextra "
    "FROM boot_resource_sets s LEFT JOIN boot_resource_files f ON f.set_id = s.id "
)


async def get_resource(db: Database, resource_id: int) -> tuple[ResourceRow, list[SetRow]] | None:
    """A resource and its sets, newest first; None if unknown."""
    async with db.read() as conn:
        return await _get_resource(conn, resource_id)


async def _get_resource(
    conn: Connection, resource_id: int
) -> tuple[ResourceRow, list[SetRow]] | None:
    async with conn.execute("SELECT * FROM boot_resources WHERE id = ?", (resource_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    async with conn.execute(
        _SET_FILES + "WHERE s.resource_id = ? ORDER BY s.id DESC, f.filename", (resource_id,)
    ) as cur:
        sets = _sets(await cur.fetchall())
    return _resource(row), [s for s, _rid in sets.values()]


@dataclass(frozen=True)
class SetTotals:
    """Byte counts of a resource's newest set, for listings."""

    files: int
    total: int
    done: int
    complete: bool


# The newest set of each resource and that set's file totals, each aggregated once
# over its table and joined by hash (a subquery per resource cost PostgreSQL 20-45 ms
# for 1,000 resources, this 8 ms); an older set's files are summed but never joined.
# The sums are cast to BIGINT: PostgreSQL's SUM of a BIGINT is a NUMERIC (a Decimal).
_NEWEST_TOTALS = (
    "FROM boot_resources r LEFT JOIN (SELECT resource_id, MAX(id) AS set_id "
    "FROM boot_resource_sets GROUP BY resource_id) n ON n.resource_id = r.id "
    "LEFT JOIN (SELECT set_id, COUNT(*) AS files, CAST(SUM(size) AS BIGINT) AS total, "
    "CAST(SUM(CASE WHEN bytes_done < size THEN bytes_done ELSE size END) AS BIGINT) AS done, "
    "CAST(SUM(CASE WHEN bytes_done >= size THEN 1 ELSE 0 END) AS BIGINT) AS stored "
    "FROM boot_resource_files GROUP BY set_id) t ON t.set_id = n.set_id "
    "WHERE CAST(? AS BIGINT) IS NULL OR r.rtype = ? ORDER BY r.rtype, r.name, r.architecture"
)
_TOTALS_COLUMNS = "n.set_id, t.files, t.total, t.done, t.stored "


def _totals(row: Row) -> SetTotals | None:
    if row["set_id"] is None:
        return None
    return _set_totals(row["files"], row["total"], row["done"], row["stored"])


@lru_cache(maxsize=4096)
def _set_totals(files: int | None, total: Any, done: Any, stored: Any) -> SetTotals:
    """The totals of a newest set from its aggregates (frozen: shared between equal rows)."""
    count = files or 0
    return SetTotals(
        files=count,
        # SUM is NUMERIC on PostgreSQL (a Decimal): int() on both engines.
        total=int(total or 0),
        done=int(done or 0),
        complete=bool(count) and int(stored or 0) == count,
    )


async def list_resources(
    db: Database,
    rtype: int | None = None,
) -> list[tuple[ResourceRow, SetTotals | None]]:
    """Resources (of ``rtype``, or all) with their newest set's totals, in one query.

    Ordered by type, name and architecture as MAAS lists them.
    """
    async with (
        db.read() as conn,
        conn.execute("SELECT r.*, " + _TOTALS_COLUMNS + _NEWEST_TOTALS, (rtype, rtype)) as cur,
    ):
        rows = await cur.fetchall()
    return [(_resource(row), _totals(row)) for row in rows]


class ListRow(NamedTuple):
    """What the boot-resources list shows of a resource (:func:`list_rows`)."""

    id: int
    rtype: int
    name: str
    architecture: str
    base_image: str
    extra: Mapping[str, Any]
    newest: SetTotals | None


_EMPTY: Mapping[str, Any] = MappingProxyType({})


@lru_cache(maxsize=8192)
def _shared_extra(text: str) -> Mapping[str, Any]:
    """``extra`` decoded once per distinct text and shared, read-only (lists stay lists)."""
    return MappingProxyType(json.loads(text)) if text != "{}" else _EMPTY


async def list_rows(db: Database, rtype: int | None = None) -> list[ListRow]:
    """:func:`list_resources` narrowed to the columns the API list shows, for speed.

    Same resources, order and totals, in one query; ``extra`` is read-only and
    shared between calls (decoded once per distinct text).
    """
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT r.id, r.rtype, r.name, r.architecture, r.base_image, r.extra, "
            + _TOTALS_COLUMNS
            + _NEWEST_TOTALS,
            (rtype, rtype),
        ) as cur,
    ):
        rows = await cur.fetchall()
    # Positional unpacking: the columns are the SELECT's, in its order.
    return [
        ListRow(
            rid,
            kind,
            name,
            architecture,
            base_image,
            _shared_extra(extra),
            None if set_id is None else _set_totals(files, total, done, stored),
        )
        for rid, kind, name, architecture, base_image, extra, set_id, files, total, done, stored in rows
    ]


async def delete_resource(db: Database, resource_id: int) -> bool:
    """Delete one resource with its sets and files; False if it did not exist."""
    cur = await atomic(
        db, lambda conn: conn.execute("DELETE FROM boot_resources WHERE id = ?", (resource_id,))
    )
    return cur.rowcount > 0


async def list_synced(db: Database) -> list[ResourceRow]:
    """Every synced resource, by name and architecture."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT * FROM boot_resources WHERE rtype = ? ORDER BY name, architecture", (SYNCED,)
        ) as cur,
    ):
        return [_resource(row) for row in await cur.fetchall()]


async def complete_sets(db: Database) -> list[tuple[ResourceRow, list[SetRow]]]:
    """Every resource with at least one complete set, with only its complete sets."""
    async with db.read() as conn:
        return await _complete_sets(conn)


async def _complete_sets(conn: Connection) -> list[tuple[ResourceRow, list[SetRow]]]:
    async with conn.execute(
        _SET_FILES + f"WHERE s.id IN ({COMPLETE_SETS}) ORDER BY s.resource_id, s.id, f.filename"
    ) as cur:
        sets = _sets(await cur.fetchall())
    by_resource: dict[int, list[SetRow]] = {}
    for set_row, rid in sets.values():
        by_resource.setdefault(rid, []).append(set_row)
    async with conn.execute("SELECT * FROM boot_resources ORDER BY name, architecture") as cur:
        resources = [_resource(row) for row in await cur.fetchall()]
    return [(r, by_resource[r.id]) for r in resources if r.id in by_resource]
