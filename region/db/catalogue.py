"""What each boot source offers (the catalogue) and what we last learnt about it.

Tables ``boot_source_cache``, ``boot_source_status`` and ``imported_index``
(the rollback guard). Functions take the :class:`~region.db.connection.Database`:
reads see the last committed state, every writing function is one ``db.write()``.
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass

from region.db.connection import Database, Row
from region.db.timestamps import now_iso

CatalogueKey = tuple[str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One image a source advertises; unique per source by :attr:`key`."""

    os: str
    arch: str
    subarch: str
    release: str
    label: str
    kflavor: str | None = None
    bootloader_type: str | None = None
    release_codename: str | None = None
    release_title: str | None = None
    support_eol: str | None = None
    title: str = ""

    @property
    def key(self) -> CatalogueKey:
        """(os, arch, subarch, release, label): the unique key within a source."""
        return (self.os, self.arch, self.subarch, self.release, self.label)


@dataclass(frozen=True, slots=True)
class CatalogueDiff:
    """How many rows :func:`replace_catalogue` inserted, updated and deleted."""

    added: int
    updated: int
    removed: int


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """Errors, warnings and index freshness of one source (all None before any check)."""

    source_id: int
    last_error: str | None = None
    last_error_at: str | None = None
    warnings: tuple[str, ...] = ()
    last_index_updated: str | None = None
    index_changed_at: str | None = None
    last_checked_at: str | None = None  # the last time the index was read and verified


# A constant column list: the f-strings below interpolate nothing from outside.
_COLUMNS = (
    "os, arch, subarch, release, label, kflavor, bootloader_type, release_codename, "
    "release_title, support_eol, extra"
)


def _entry(row: Row) -> CatalogueEntry:
    extra = json.loads(row["extra"] or "{}")
    return CatalogueEntry(
        os=row["os"],
        arch=row["arch"],
        subarch=row["subarch"],
        release=row["release"],
        label=row["label"],
        kflavor=row["kflavor"],
        bootloader_type=row["bootloader_type"],
        release_codename=row["release_codename"],
        release_title=row["release_title"],
        support_eol=row["support_eol"],
        title=str(extra.get("title") or ""),
    )


def _values(entry: CatalogueEntry) -> tuple[object, ...]:
    return (*astuple(entry)[:10], json.dumps({"title": entry.title}))


async def available(db: Database, source_id: int) -> list[CatalogueEntry]:
    """The catalogue of ``source_id``, ordered by os, release, arch, subarch, label."""
    async with (
        db.read() as conn,
        conn.execute(
            f"SELECT {_COLUMNS} FROM boot_source_cache WHERE boot_source_id = ? "  # noqa: S608
            "ORDER BY os, release, arch, subarch, label",
            (source_id,),
        ) as cur,
    ):
        return [_entry(row) for row in await cur.fetchall()]


async def has_catalogue(db: Database, source_id: int) -> bool:
    """True once the source's index has been read successfully (even if it offers nothing)."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT 1 FROM boot_source_status WHERE boot_source_id = ? "
            "AND last_checked_at IS NOT NULL UNION ALL "
            "SELECT 1 FROM boot_source_cache WHERE boot_source_id = ? LIMIT 1",
            (source_id, source_id),
        ) as cur,
    ):
        return await cur.fetchone() is not None


async def replace_catalogue(
    db: Database, source_id: int, entries: list[CatalogueEntry]
) -> CatalogueDiff:
    """Make the catalogue of ``source_id`` exactly ``entries`` (first of a key wins).

    Rows are diffed, not rewritten: new keys inserted, changed rows updated,
    vanished keys deleted.
    """
    wanted: dict[CatalogueKey, CatalogueEntry] = {}
    for entry in entries:
        wanted.setdefault(entry.key, entry)
    async with db.write() as conn:
        async with conn.execute(
            f"SELECT id, {_COLUMNS} FROM boot_source_cache "  # noqa: S608
            "WHERE boot_source_id = ?",
            (source_id,),
        ) as cur:
            existing = {(e := _entry(row)).key: (int(row["id"]), e) for row in await cur.fetchall()}
        now = now_iso()
        added = [(source_id, *_values(e), now, now) for k, e in wanted.items() if k not in existing]
        changed = [
            (*_values(e), now, existing[k][0])
            for k, e in wanted.items()
            if k in existing and existing[k][1] != e
        ]
        gone = [(row_id,) for k, (row_id, _e) in existing.items() if k not in wanted]
        await conn.executemany(
            f"INSERT INTO boot_source_cache (boot_source_id, {_COLUMNS}, created, updated) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            added,
        )
        await conn.executemany(
            "UPDATE boot_source_cache SET os = ?, arch = ?, subarch = ?, release = ?, "
            "label = ?, kflavor = ?, bootloader_type = ?, release_codename = ?, "
            "release_title = ?, support_eol = ?, extra = ?, updated = ? WHERE id = ?",
            changed,
        )
        await conn.executemany("DELETE FROM boot_source_cache WHERE id = ?", gone)
    return CatalogueDiff(added=len(added), updated=len(changed), removed=len(gone))


async def get_status(db: Database, source_id: int) -> SourceStatus:
    """What we know about ``source_id`` (an empty status if it was never checked)."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT * FROM boot_source_status WHERE boot_source_id = ?", (source_id,)
        ) as cur,
    ):
        row = await cur.fetchone()
    if row is None:
        return SourceStatus(source_id=source_id)
    return SourceStatus(
        source_id=source_id,
        last_error=row["last_error"],
        last_error_at=row["last_error_at"],
        warnings=tuple(json.loads(row["warnings"] or "[]")),
        last_index_updated=row["last_index_updated"],
        index_changed_at=row["index_changed_at"],
        last_checked_at=row["last_checked_at"],
    )


async def record_checked(
    db: Database, source_id: int, *, index_updated: str | None, warnings: list[str]
) -> None:
    """Record a successful read of the source's index: clears its error, sets its warnings."""
    now = now_iso()
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO boot_source_status (boot_source_id, warnings, last_index_updated, "
            "index_changed_at, last_checked_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (boot_source_id) DO UPDATE SET last_error = NULL, last_error_at = NULL, "
            "warnings = excluded.warnings, last_checked_at = excluded.last_checked_at, "
            "index_changed_at = CASE WHEN boot_source_status.last_index_updated IS NOT DISTINCT FROM "
            "excluded.last_index_updated "
            "THEN boot_source_status.index_changed_at ELSE excluded.index_changed_at END, "
            "last_index_updated = excluded.last_index_updated",
            (source_id, json.dumps(warnings), index_updated, now, now),
        )


async def record_error(db: Database, source_id: int, message: str) -> None:
    """Record ``message`` as the source's last error (kept until its next successful read)."""
    now = now_iso()
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO boot_source_status (boot_source_id, last_error, last_error_at) "
            "VALUES (?, ?, ?) ON CONFLICT (boot_source_id) DO UPDATE SET "
            "last_error = excluded.last_error, last_error_at = excluded.last_error_at",
            (source_id, message, now),
        )


async def last_imported_index(db: Database, url: str) -> str | None:
    """The index ``updated`` value last imported from ``url`` (rollback guard)."""
    async with (
        db.read() as conn,
        conn.execute("SELECT index_updated FROM imported_index WHERE url = ?", (url,)) as cur,
    ):
        row = await cur.fetchone()
    return None if row is None else str(row["index_updated"])


async def remember_imported_index(db: Database, url: str, index_updated: str) -> None:
    """Record ``index_updated`` as the index last imported from ``url``."""
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO imported_index (url, index_updated, imported_at) VALUES (?, ?, ?) "
            "ON CONFLICT (url) DO UPDATE SET index_updated = excluded.index_updated, "
            "imported_at = excluded.imported_at",
            (url, index_updated, now_iso()),
        )
