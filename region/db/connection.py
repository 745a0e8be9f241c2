"""The region's SQLite database: one aiosqlite connection, WAL, numbered migrations.

Migrations are the files ``region/db/migrations/NNNN_<name>.sql``, applied in order
at start-up inside one transaction each; ``PRAGMA user_version`` records the
last one applied. A file is never edited once released: a change is a new file.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import aiosqlite

from common.ops.logging import get_logger

log = get_logger("db")

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every migration shipped, in order; ValueError on a gap."""
    found = []
    for entry in resources.files("region.db.migrations").iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (number, name, _sql) in enumerate(found, start=1):
        if number != expected:
            raise ValueError(f"migration {name}: expected number {expected:04d}")
    return found


async def migrate(conn: aiosqlite.Connection) -> int:
    """Apply the migrations the database lacks; returns the schema version."""
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    current = int(row[0]) if row else 0
    for number, name, sql in await asyncio.to_thread(migrations):
        if number <= current:
            continue
        # executescript commits first; BEGIN inside the script makes each file atomic.
        await conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
        log.info("db_migrated", migration=name, version=number)
        current = number
    return current


_WRITE_LOCKS: weakref.WeakKeyDictionary[aiosqlite.Connection, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def transaction(conn: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """Run several statements as one transaction on the shared connection.

    All coroutines share one connection, so a ``commit()`` by one would commit
    another's half-done work: writers take this lock, and the block is committed
    when it ends without error and rolled back otherwise.
    """
    lock = _WRITE_LOCKS.setdefault(conn, asyncio.Lock())
    async with lock:
        try:
            yield conn
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()


@asynccontextmanager
async def open_db(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """Open (creating if needed) and migrate the database at ``path``.

    Rows come back as :class:`aiosqlite.Row` (access by column name); foreign keys
    are enforced; the journal is WAL so readers never wait for the importer.
    """
    conn = await aiosqlite.connect(path)
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await migrate(conn)
        yield conn
    finally:
        await conn.close()
