"""Boot sources and their selections in the region database.

Functions take the :class:`~region.db.connection.Database`, read on a reader
(the last committed state), write each change as one transaction and return
frozen rows. A write that would break a UNIQUE constraint raises
:class:`DuplicateError`; an unknown id gives None (or False for deletes).
Values are stored as given: validation belongs to the API layer.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from common.errors import BootsyncError
from region.db.connection import Connection, Database, Row
from region.db.timestamps import now_iso


class DuplicateError(BootsyncError):
    """A row with the same unique key already exists; ``field`` names the column if known."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class BootSource:
    """A SimpleStreams mirror and the keyring (a path or the bytes) that must have signed it."""

    id: int
    url: str
    keyring_filename: str
    keyring_data: bytes
    created: str
    updated: str
    name: str = ""  # unique; the URL unless named
    priority: int = 0  # unique; the higher wins an image two sources offer
    enabled: bool = True  # a disabled source is not read
    skip_keyring_verification: bool = False  # read the unsigned index.json, no keyring


def default_skip_verification(url: str) -> bool:
    """MAAS's default for ``skip_keyring_verification``: a URL naming a ``.json`` index."""
    return url.endswith(".json")


@dataclass(frozen=True)
class Selection:
    """Which images to take from a source; ``*`` in a list (or as os/release) matches all."""

    id: int
    boot_source_id: int
    os: str
    release: str
    arches: tuple[str, ...]
    subarches: tuple[str, ...]
    labels: tuple[str, ...]
    created: str
    updated: str


def _source(row: Row) -> BootSource:
    return BootSource(
        id=row["id"],
        url=row["url"],
        keyring_filename=row["keyring_filename"],
        keyring_data=bytes(row["keyring_data"]),
        created=row["created"],
        updated=row["updated"],
        name=row["name"],
        priority=row["priority"],
        enabled=bool(row["enabled"]),
        skip_keyring_verification=bool(row["skip_keyring_verification"]),
    )


def _selection(row: Row) -> Selection:
    return Selection(
        id=row["id"],
        boot_source_id=row["boot_source_id"],
        os=row["os"],
        release=row["release"],
        arches=tuple(json.loads(row["arches"])),
        subarches=tuple(json.loads(row["subarches"])),
        labels=tuple(json.loads(row["labels"])),
        created=row["created"],
        updated=row["updated"],
    )


@asynccontextmanager
async def _writing(db: Database, duplicate: str) -> AsyncIterator[Connection]:
    """A write transaction whose UNIQUE violations become ``DuplicateError(duplicate)``."""
    try:
        async with db.write() as conn:
            yield conn
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc):
            column = re.search(r"UNIQUE constraint failed: \w+\.(\w+)", str(exc))
            raise DuplicateError(duplicate, field=column[1] if column else None) from exc
        raise


async def _write(db: Database, sql: str, params: tuple[Any, ...], duplicate: str) -> int:
    """Run one writing statement and commit; returns lastrowid (or rowcount for no insert)."""
    async with _writing(db, duplicate) as conn:
        cursor = await conn.execute(sql, params)
    if sql.startswith("INSERT"):
        return cursor.lastrowid or 0
    return cursor.rowcount


# --- sources --------------------------------------------------------------------


async def create_source(
    db: Database,
    *,
    url: str,
    keyring_filename: str = "",
    keyring_data: bytes = b"",
    name: str | None = None,
    priority: int | None = None,
    enabled: bool = True,
    skip_keyring_verification: bool | None = None,
) -> BootSource:
    """Insert a source; DuplicateError (``field`` url, name or priority) if one is taken.

    MAAS's defaults: ``name`` the URL, ``priority`` one above the highest,
    ``skip_keyring_verification`` whether the URL names a ``.json`` index.
    """
    now = now_iso()
    skip = (
        default_skip_verification(url)
        if skip_keyring_verification is None
        else skip_keyring_verification
    )
    async with _writing(db, f"boot source {url} exists") as conn:
        cursor = await conn.execute(
            "INSERT INTO boot_sources (url, keyring_filename, keyring_data, created, updated,"
            " name, priority, enabled, skip_keyring_verification) VALUES (?, ?, ?, ?, ?, ?,"
            " COALESCE(?, (SELECT COALESCE(MAX(priority), 0) + 1 FROM boot_sources)), ?, ?)"
            " RETURNING id",
            (url, keyring_filename, keyring_data, now, now, name or url, priority, enabled, skip),
        )
        source = await _get_source(conn, cursor.lastrowid or 0)
    assert source is not None
    return source


async def get_source(db: Database, source_id: int) -> BootSource | None:
    """The source ``source_id``, or None."""
    async with db.read() as conn:
        return await _get_source(conn, source_id)


async def _get_source(conn: Connection, source_id: int) -> BootSource | None:
    async with conn.execute("SELECT * FROM boot_sources WHERE id = ?", (source_id,)) as cur:
        row = await cur.fetchone()
    return _source(row) if row else None


async def find_source_by_url(db: Database, url: str) -> BootSource | None:
    """The source whose URL is exactly ``url``, or None."""
    async with (
        db.read() as conn,
        conn.execute("SELECT * FROM boot_sources WHERE url = ?", (url,)) as cur,
    ):
        row = await cur.fetchone()
    return _source(row) if row else None


async def list_sources(db: Database) -> list[BootSource]:
    """Every source, by id."""
    async with db.read() as conn:
        return await _list_sources(conn)


async def _list_sources(conn: Connection) -> list[BootSource]:
    async with conn.execute("SELECT * FROM boot_sources ORDER BY id") as cur:
        return [_source(row) for row in await cur.fetchall()]


async def update_source(
    db: Database,
    source_id: int,
    *,
    url: str | None = None,
    keyring_filename: str | None = None,
    keyring_data: bytes | None = None,
    name: str | None = None,
    priority: int | None = None,
    enabled: bool | None = None,
    skip_keyring_verification: bool | None = None,
) -> BootSource | None:
    """Change the given fields (None keeps a field); None if the source does not exist.

    Raises DuplicateError (``field`` url, name or priority) if the new value
    belongs to another source.
    """
    changes: dict[str, Any] = {
        "url": url,
        "keyring_filename": keyring_filename,
        "keyring_data": keyring_data,
        "name": name,
        "priority": priority,
        "enabled": enabled,
        "skip_keyring_verification": skip_keyring_verification,
    }
    changes = {name: value for name, value in changes.items() if value is not None}
    changes["updated"] = now_iso()
    assignments = ", ".join(f"{name} = ?" for name in changes)
    async with _writing(db, f"boot source {url} exists") as conn:
        cursor = await conn.execute(
            f"UPDATE boot_sources SET {assignments} WHERE id = ?",  # noqa: S608
            (*changes.values(), source_id),
        )
        return await _get_source(conn, source_id) if cursor.rowcount else None


async def delete_source(db: Database, source_id: int) -> bool:
    """Delete a source with its selections (and catalogue rows); False if it did not exist."""
    return bool(await _write(db, "DELETE FROM boot_sources WHERE id = ?", (source_id,), ""))


# --- selections -------------------------------------------------------------------


async def create_selection(
    db: Database,
    source_id: int,
    *,
    os: str,
    release: str,
    arches: list[str] | tuple[str, ...] = (),
    subarches: list[str] | tuple[str, ...] = (),
    labels: list[str] | tuple[str, ...] = (),
) -> Selection:
    """Insert a selection; DuplicateError if the source already has one for os+release."""
    now = now_iso()
    new_id = await _write(
        db,
        "INSERT INTO boot_source_selections (boot_source_id, os, release, arches,"
        " subarches, labels, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            source_id,
            os,
            release,
            json.dumps(list(arches)),
            json.dumps(list(subarches)),
            json.dumps(list(labels)),
            now,
            now,
        ),
        f"selection {os}/{release} exists",
    )
    return Selection(
        id=new_id,
        boot_source_id=source_id,
        os=os,
        release=release,
        arches=tuple(arches),
        subarches=tuple(subarches),
        labels=tuple(labels),
        created=now,
        updated=now,
    )


async def get_selection(db: Database, source_id: int, selection_id: int) -> Selection | None:
    """Selection ``selection_id`` of source ``source_id``, or None."""
    async with db.read() as conn:
        return await _get_selection(conn, source_id, selection_id)


async def _get_selection(conn: Connection, source_id: int, selection_id: int) -> Selection | None:
    async with conn.execute(
        "SELECT * FROM boot_source_selections WHERE id = ? AND boot_source_id = ?",
        (selection_id, source_id),
    ) as cur:
        row = await cur.fetchone()
    return _selection(row) if row else None


async def list_selections(db: Database, source_id: int | None = None) -> list[Selection]:
    """The selections of one source (every source's when None), by id."""
    async with db.read() as conn:
        return await _list_selections(conn, source_id)


async def _list_selections(conn: Connection, source_id: int | None = None) -> list[Selection]:
    query = "SELECT * FROM boot_source_selections ORDER BY id"
    params: tuple[int, ...] = ()
    if source_id is not None:
        query = "SELECT * FROM boot_source_selections WHERE boot_source_id = ? ORDER BY id"
        params = (source_id,)
    async with conn.execute(query, params) as cur:
        return [_selection(row) for row in await cur.fetchall()]


async def update_selection(
    db: Database,
    source_id: int,
    selection_id: int,
    *,
    os: str | None = None,
    release: str | None = None,
    arches: list[str] | tuple[str, ...] | None = None,
    subarches: list[str] | tuple[str, ...] | None = None,
    labels: list[str] | tuple[str, ...] | None = None,
) -> Selection | None:
    """Change the given fields (None keeps a field); None if the selection does not exist.

    Raises DuplicateError if the new os+release is taken in the same source.
    """
    changes: dict[str, Any] = {"os": os, "release": release}
    for name, values in (("arches", arches), ("subarches", subarches), ("labels", labels)):
        changes[name] = None if values is None else json.dumps(list(values))
    changes = {name: value for name, value in changes.items() if value is not None}
    changes["updated"] = now_iso()
    assignments = ", ".join(f"{name} = ?" for name in changes)
    async with _writing(db, "selection os/release exists") as conn:
        cursor = await conn.execute(
            f"UPDATE boot_source_selections SET {assignments}"  # noqa: S608
            " WHERE id = ? AND boot_source_id = ?",
            (*changes.values(), selection_id, source_id),
        )
        return await _get_selection(conn, source_id, selection_id) if cursor.rowcount else None


async def delete_selection(db: Database, source_id: int, selection_id: int) -> bool:
    """Delete one selection; False if it did not exist."""
    return bool(
        await _write(
            db,
            "DELETE FROM boot_source_selections WHERE id = ? AND boot_source_id = ?",
            (selection_id, source_id),
            "",
        )
    )


async def sources_fingerprint(db: Database) -> str:
    """A sha256 over every source and selection (timestamps excluded).

    The importer compares it before and after an import: a different value means
    the sources or selections changed meanwhile and the import must run again.
    """
    async with db.read() as conn:
        sources = await _list_sources(conn)
        selections = await _list_selections(conn)
    digest = hashlib.sha256()
    for source in sources:
        digest.update(
            json.dumps(
                [
                    "source",
                    source.id,
                    source.url,
                    source.keyring_filename,
                    hashlib.sha256(source.keyring_data).hexdigest(),
                    source.priority,
                    source.enabled,
                    source.skip_keyring_verification,
                ]
            ).encode()
        )
    for sel in selections:
        digest.update(
            json.dumps(
                [
                    "selection",
                    sel.id,
                    sel.boot_source_id,
                    sel.os,
                    sel.release,
                    sel.arches,
                    sel.subarches,
                    sel.labels,
                ]
            ).encode()
        )
    return digest.hexdigest()
