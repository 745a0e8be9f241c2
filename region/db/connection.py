"""The region database: SQLite (default) or PostgreSQL, one schema, the same repositories.

:class:`Database` is the only way in. ``async with db.write() as conn`` is one
transaction on the single writer (writers queue on a lock; on PostgreSQL they also
take one advisory lock, so the regions sharing a server write one at a time just as
SQLite's processes do); ``async with db.read() as conn`` borrows a reader whose
block sees one snapshot of the last committed state (SQLite: a WAL read
transaction; PostgreSQL: a read-only REPEATABLE READ transaction), so a read never
shows another coroutine's uncommitted rows (a half-written import). A block that
must read its own writes does so on the connection ``write()`` gave it.

Both engines hand the repositories a :class:`Connection` (region/db/engine.py):
hand-written SQL with ``?`` placeholders, rows addressable by column name, a new
row's id by ``INSERT ... RETURNING id``; errors are :mod:`sqlite3`'s on both.

Migrations are the files ``region/db/migrations/NNNN_<name>.sql`` (SQLite) and
``region/db/migrations/postgresql/NNNN_<name>.sql`` (the same numbers), applied in
order at start-up inside one transaction each; ``PRAGMA user_version`` (SQLite)
or the table ``schema_version`` (PostgreSQL) records the last one applied. A file
is never edited once released: a change is a new file on both engines.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from common.ops.logging import get_logger
from common.storage.modes import create_private_file, tighten_file
from region.db.engine import Connection, Row, SqliteConnection

__all__ = ["Connection", "Database", "Row", "check_db", "migrations", "open_db"]

log = get_logger("db")

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
READERS = 4  # reader connections per Database (each is one aiosqlite thread)
BUSY_TIMEOUT_MS = 5000  # another process (``bootsync apikey``) may hold the write lock
SIDE_FILES = ("-wal", "-shm")  # what SQLite keeps beside the database in WAL mode


def migrations(dialect: str = "sqlite") -> list[tuple[int, str, str]]:
    """(number, name, sql) of every migration shipped for ``dialect``, in order; ValueError on a gap."""
    found = []
    folder = resources.files("region.db.migrations")
    if dialect == "postgresql":
        folder = folder / "postgresql"
    elif dialect != "sqlite":
        raise ValueError(f"no migrations for database engine {dialect!r}")
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (number, name, _sql) in enumerate(found, start=1):
        if number != expected:
            raise ValueError(f"migration {name}: expected number {expected:04d}")
    return found


async def migrate(conn: aiosqlite.Connection) -> int:
    """Apply the migrations the database lacks; returns the schema version.

    Foreign keys are not enforced while a migration runs, so that one can rebuild
    a table (dropping the old one must not cascade to its children), and are
    checked before it commits: a migration that leaves a row pointing at a
    missing parent is rolled back with an IntegrityError naming the tables.
    """
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    current = int(row[0]) if row else 0
    async with conn.execute("PRAGMA foreign_keys") as cur:
        row = await cur.fetchone()
    enforced = bool(row and row[0])
    for number, name, sql in await asyncio.to_thread(migrations):
        if number <= current:
            continue
        # foreign_keys cannot change inside a transaction: switch it off before BEGIN.
        await _run(conn, "PRAGMA foreign_keys=OFF")
        try:
            # executescript commits first; BEGIN inside the script makes each file atomic.
            await conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};")
            await _check_foreign_keys(conn, name)
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
        finally:
            await _run(conn, f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")
        log.info("db_migrated", migration=name, version=number)
        current = number
    return current


async def _check_foreign_keys(conn: aiosqlite.Connection, migration: str) -> None:
    """Raise IntegrityError naming (child -> parent) tables if a row's parent is missing."""
    async with conn.execute("PRAGMA foreign_key_check") as cur:
        dangling = sorted({(row[0], row[2]) for row in await cur.fetchall()})
    if dangling:
        pairs = ", ".join(f"{child} -> {parent}" for child, parent in dangling)
        raise aiosqlite.IntegrityError(f"migration {migration} leaves dangling rows: {pairs}")


class Database:
    """The region database: one writer and a pool of readers, on either engine.

    Made by :func:`open_db`, which also closes it. Repositories use only
    :meth:`read` and :meth:`write`, which lend a :class:`Connection`.
    """

    dialect = ""
    readers = 0

    def read(self) -> AbstractAsyncContextManager[Connection]:
        """A reader; the block sees one snapshot of the last committed state."""
        raise NotImplementedError

    def write(self) -> AbstractAsyncContextManager[Connection]:
        """One transaction on the writer: committed when the block ends cleanly."""
        raise NotImplementedError

    def listen(
        self, channel: str, callback: Callable[[str], None]
    ) -> AbstractAsyncContextManager[None]:
        """Call ``callback(payload)`` for each :meth:`notify` on ``channel`` until the block ends.

        SQLite: notifications made through this Database only (one process);
        PostgreSQL: every region's, heard on a dedicated connection that
        reconnects after the server restarts (what is sent meanwhile is lost).
        """
        raise NotImplementedError

    async def notify(self, channel: str, payload: str) -> None:
        """Send ``payload`` to the listeners on ``channel`` (PostgreSQL: under 8000 bytes)."""
        raise NotImplementedError


class _LocalChannels:
    """In-process notifications: each listener's callback is called soon after ``notify``."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[[str], None]]] = {}

    @asynccontextmanager
    async def listen(self, channel: str, callback: Callable[[str], None]) -> AsyncIterator[None]:
        listeners = self._listeners.setdefault(channel, [])
        listeners.append(callback)
        try:
            yield
        finally:
            listeners.remove(callback)

    def notify(self, channel: str, payload: str) -> None:
        loop = asyncio.get_running_loop()
        for callback in list(self._listeners.get(channel, ())):
            loop.call_soon(callback, payload)


class SqliteDatabase(Database):
    """SQLite: one writer connection and a few reader connections on one file."""

    dialect = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, readers: Sequence[aiosqlite.Connection]):
        if not readers:
            raise ValueError("a Database needs at least one reader connection")
        self._writer = SqliteConnection(writer)
        self._write_lock = asyncio.Lock()
        # Last in, first out: a quiet region keeps reusing one warm connection.
        self._idle: asyncio.LifoQueue[SqliteConnection] = asyncio.LifoQueue()
        for reader in readers:
            self._idle.put_nowait(SqliteConnection(reader))
        self.readers = len(readers)
        self._channels = _LocalChannels()

    def listen(
        self, channel: str, callback: Callable[[str], None]
    ) -> AbstractAsyncContextManager[None]:
        """This Database's own notifications on ``channel`` (one process: one region)."""
        return self._channels.listen(channel, callback)

    async def notify(self, channel: str, payload: str) -> None:
        """Call each listener on ``channel`` of this Database soon, with ``payload``."""
        self._channels.notify(channel, payload)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        """A reader connection; the block sees one snapshot of the last committed state.

        Waits while every reader is lent out. Nothing can be written through it.
        """
        conn = await self._idle.get()
        try:
            await _run(conn.raw, "BEGIN")
            yield conn
        finally:
            try:
                await conn.raw.rollback()  # ends the snapshot; a no-op if BEGIN never ran
            finally:
                self._idle.put_nowait(conn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Connection]:
        """One transaction on the writer: committed when the block ends cleanly.

        Writers wait for each other (and ``BEGIN IMMEDIATE`` for another process's
        writer); an exception or a cancellation rolls the block back.
        """
        async with self._write_lock:
            conn = self._writer
            try:
                await _run(conn.raw, "BEGIN IMMEDIATE")
                yield conn
                await conn.raw.commit()
            except BaseException:
                await conn.raw.rollback()
                raise


class PostgresDatabase(Database):
    """PostgreSQL: a pool of ``readers + 1`` connections; writes one at a time."""

    dialect = "postgresql"

    def __init__(self, pool: Any, readers: int, *, url: str = "") -> None:
        self._pool = pool
        self._url = url  # what the LISTEN connection connects to
        self._write_lock = asyncio.Lock()
        self._read_slots = asyncio.Semaphore(readers)
        self.readers = readers

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        """A read-only REPEATABLE READ transaction (one snapshot)."""
        from region.db import postgres  # noqa: PLC0415 - asyncpg is an extra, only for PostgreSQL

        async with self._read_slots, postgres.read_tx(self._pool) as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Connection]:
        """One transaction; this region's writers queue on a lock, all regions' on an advisory lock."""
        from region.db import postgres  # noqa: PLC0415 - asyncpg is an extra, only for PostgreSQL

        async with self._write_lock, postgres.write_tx(self._pool) as conn:
            yield conn

    @asynccontextmanager
    async def listen(self, channel: str, callback: Callable[[str], None]) -> AsyncIterator[None]:
        """Every region's NOTIFYs on ``channel``, on a dedicated connection that reconnects."""
        from region.db import postgres  # noqa: PLC0415 - asyncpg is an extra, only for PostgreSQL

        async with postgres.listen(self._url, channel, callback):
            yield

    async def notify(self, channel: str, payload: str) -> None:
        """``NOTIFY`` on the server: every region listening on ``channel`` hears it."""
        from region.db import postgres  # noqa: PLC0415 - asyncpg is an extra, only for PostgreSQL

        await postgres.notify(self._pool, channel, payload)


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path)
    conn.row_factory = aiosqlite.Row
    return conn


async def _run(conn: aiosqlite.Connection, *statements: str) -> None:
    for sql in statements:
        # Closing the cursor ends the statement: an open one would pin a snapshot.
        async with conn.execute(sql):
            pass


def _private_files(path: Path) -> None:
    create_private_file(path)
    for suffix in SIDE_FILES:
        tighten_file(path.with_name(path.name + suffix))


def is_postgresql(target: Path | str) -> bool:
    """Whether ``target`` (a path or ``[database] url``) names a PostgreSQL server."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def sqlite_path(target: Path | str) -> Path:
    """The file a ``sqlite:///...`` URL (or a plain path) names."""
    text = str(target)
    return Path(text[len("sqlite://") :]) if text.startswith("sqlite://") else Path(text)


@asynccontextmanager
async def open_db(target: Path | str, *, readers: int = READERS) -> AsyncIterator[Database]:
    """Open (creating if needed) and migrate the database ``target``; close it after.

    ``target`` is a SQLite file (a path or ``sqlite:///abs/path``) or a
    ``postgresql://user@host/db`` URL (the server's database must exist).
    """
    if is_postgresql(target):
        from region.db import postgres  # noqa: PLC0415 - asyncpg is an extra, only for PostgreSQL

        async with postgres.pool(str(target), readers + 1) as pool:
            async with pool.acquire() as raw:
                await postgres.migrate(raw, await asyncio.to_thread(migrations, "postgresql"))
            yield PostgresDatabase(pool, readers, url=str(target))
        return
    async with _open_sqlite(sqlite_path(target), readers=readers) as db:
        yield db


async def check_db(target: Path | str) -> tuple[int, int]:
    """(schema version found, version shipped) of ``target``, connecting but changing nothing.

    sqlite3.Error (for either engine) when it cannot be reached.
    """
    if is_postgresql(target):
        from region.db import postgres  # noqa: PLC0415 - asyncpg is an extra, only for PostgreSQL

        found = await postgres.with_raw(str(target), postgres.schema_version)
        shipped = await asyncio.to_thread(migrations, "postgresql")
    else:
        path = sqlite_path(target)
        found = 0
        if await asyncio.to_thread(path.exists):
            async with aiosqlite.connect(f"file:{path}?mode=ro", uri=True) as conn:
                async with conn.execute("PRAGMA user_version") as cur:
                    row = await cur.fetchone()
                found = int(row[0]) if row else 0
        shipped = await asyncio.to_thread(migrations)
    return found, (shipped[-1][0] if shipped else 0)


@asynccontextmanager
async def _open_sqlite(path: Path, *, readers: int) -> AsyncIterator[Database]:
    """Open (creating if needed) and migrate the SQLite database at ``path``; close it after.

    The journal is WAL, so readers never wait for the writer and see what it
    last committed; foreign keys are enforced on the writer; readers are
    ``query_only``. ``path`` must be a file (each connection opens it anew).
    It holds API token secrets: it is created 0600 whatever the umask (SQLite
    gives its ``-wal`` and ``-shm`` files the same mode), and an existing one, or
    a ``-wal``/``-shm`` left behind, more open than 0640 is made 0600 (logged).
    """
    await asyncio.to_thread(_private_files, path)
    opened: list[aiosqlite.Connection] = []
    try:
        writer = await _connect(path)
        opened.append(writer)
        await _run(
            writer,
            f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
            "PRAGMA journal_mode=WAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA synchronous=NORMAL",
        )
        await migrate(writer)
        for _ in range(readers):
            reader = await _connect(path)
            opened.append(reader)
            await _run(reader, f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}", "PRAGMA query_only=ON")
        yield SqliteDatabase(writer, opened[1:])
    finally:
        for conn in reversed(opened):
            await conn.close()
