"""The region database on PostgreSQL (asyncpg, the ``postgresql`` extra).

Only imported for a ``postgresql://`` URL. Statements are the repositories' own
SQL with ``?`` turned into ``$n``; asyncpg's errors become :mod:`sqlite3`'s (a
unique violation reads ``UNIQUE constraint failed: table.column`` as SQLite's
does) so callers catch one family on both engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from common.ops.logging import get_logger
from region.db.engine import Connection, Cursor, Params, Pending, numbered_placeholders

log = get_logger("db")

T = TypeVar("T")
WRITE_LOCK = 0x626F6F7473796E63  # "bootsync": the advisory lock every region's writer takes
_KEY = re.compile(r"Key \(([^)]*)\)=")


def _translate(exc: asyncpg.PostgresError) -> sqlite3.Error:
    """The sqlite3 error a caller of either engine expects for ``exc``."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        key = _KEY.search(getattr(exc, "detail", None) or "")
        column = key[1].split(",")[0].strip() if key else getattr(exc, "column_name", "") or "?"
        return sqlite3.IntegrityError(
            f"UNIQUE constraint failed: {getattr(exc, 'table_name', '?')}.{column}"
        )
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return sqlite3.IntegrityError(str(exc))
    return sqlite3.OperationalError(str(exc))


async def _guarded(work: Awaitable[T]) -> T:
    try:
        return await work
    except asyncpg.PostgresError as exc:
        raise _translate(exc) from exc


def _rowcount(status: str | None) -> int:
    """Rows changed, from a command tag such as ``UPDATE 3`` or ``INSERT 0 1``."""
    last = (status or "").rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class PgConnection(Connection):
    """An asyncpg connection behind the neutral interface."""

    dialect = "postgresql"

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Params = ()) -> Pending:
        async def run() -> Cursor:
            stmt = await _guarded(self.raw.prepare(numbered_placeholders(sql)))
            rows = await _guarded(stmt.fetch(*params))
            returning = bool(rows) and "RETURNING" in sql.upper()
            count = _rowcount(stmt.get_statusmsg())
            return Cursor(rows, count, int(rows[0][0]) if returning else None)

        return Pending(run)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        batch = [tuple(row) for row in rows]
        if batch:
            await _guarded(self.raw.executemany(numbered_placeholders(sql), batch))


# --- migrations ---------------------------------------------------------------

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER NOT NULL, applied TEXT NOT NULL, name TEXT NOT NULL)"
)


async def schema_version(raw: asyncpg.Connection) -> int:
    """The last migration applied (0: none, or no schema_version table yet)."""
    exists = await raw.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    value = await raw.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    return int(value)


async def migrate(raw: asyncpg.Connection, shipped: list[tuple[int, str, str]]) -> int:
    """Apply the migrations the server lacks, each in its own transaction; the version.

    Regions starting together take turns (the writers' advisory lock), so each
    migration runs once.
    """
    async with raw.transaction():
        await raw.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
        await raw.execute(_VERSION_TABLE)
    current = await schema_version(raw)
    for number, name, sql in shipped:
        if number <= current:
            continue
        async with raw.transaction():
            await raw.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
            if await schema_version(raw) >= number:
                continue  # another region applied it meanwhile
            await _guarded(raw.execute(sql))
            await raw.execute(
                "INSERT INTO schema_version (version, applied, name)"
                " VALUES ($1, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'), $2)",
                number,
                name,
            )
        log.info("db_migrated", migration=name, version=number)
        current = number
    return current


# --- the pool -----------------------------------------------------------------


def _pgpass(path: Path, host: str, port: str, database: str, user: str) -> str | None:
    """The password libpq's password file gives these, or None."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = re.split(r"(?<!\\):", line.strip())
        if len(fields) != 5 or line.startswith("#"):
            continue
        wanted = (host, port, database, user)
        if all(f in ("*", w) for f, w in zip(fields[:4], wanted, strict=True)):
            return fields[4].replace("\\:", ":").replace("\\\\", "\\")
    return None


def connect_options(url: str) -> dict[str, object]:
    """asyncpg's password and ssl for ``url``, found in advance (blocking: run in a thread).

    Given both, asyncpg reads no file while it connects on the event loop. The
    password comes from the URL, else PGPASSWORD, else the password file
    (PGPASSFILE or ~/.pgpass); TLS is what the URL's ``sslmode`` (or PGSSLMODE)
    asks: ``require``, ``verify-ca`` or ``verify-full``; otherwise none.
    """
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    mode = (query.get("sslmode") or [os.environ.get("PGSSLMODE", "disable")])[-1]
    password = parts.password or os.environ.get("PGPASSWORD")
    if password is None:
        passfile = Path(os.environ.get("PGPASSFILE") or Path.home() / ".pgpass")
        password = _pgpass(
            passfile,
            parts.hostname or "localhost",
            str(parts.port or 5432),
            parts.path.lstrip("/") or (parts.username or ""),
            parts.username or getpass.getuser(),
        )
    return {
        "password": password or "",
        "ssl": mode if mode in ("require", "verify-ca", "verify-full") else False,
    }


@asynccontextmanager
async def pool(url: str, size: int) -> AsyncIterator[asyncpg.Pool]:
    """A pool of ``size`` connections to ``url``; closed after."""
    options = await asyncio.to_thread(connect_options, url)
    made: asyncpg.Pool = await _guarded(
        asyncpg.create_pool(_without_sslmode(url), min_size=1, max_size=size, **options)
    )
    try:
        yield made
    finally:
        await made.close()


@asynccontextmanager
async def read_tx(pool_: asyncpg.Pool) -> AsyncIterator[PgConnection]:
    """A read-only REPEATABLE READ transaction: one snapshot of the committed state."""
    async with pool_.acquire() as raw, raw.transaction(isolation="repeatable_read", readonly=True):
        yield PgConnection(raw)


@asynccontextmanager
async def write_tx(pool_: asyncpg.Pool) -> AsyncIterator[PgConnection]:
    """One transaction holding the writers' advisory lock; committed when the block ends."""
    async with pool_.acquire() as raw, raw.transaction():
        await raw.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
        yield PgConnection(raw)


async def with_raw(url: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work`` on one fresh connection to ``url`` (``--check-config``)."""
    options = await asyncio.to_thread(connect_options, url)
    raw = await _guarded(asyncpg.connect(_without_sslmode(url), **options))
    try:
        return await work(raw)
    finally:
        await raw.close()


def _without_sslmode(url: str) -> str:
    """``url`` less its ``sslmode`` (given to asyncpg as ``ssl`` instead)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "sslmode"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def redacted(url: str) -> str:
    """``url`` without its password, for logs and messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


# --- notifications --------------------------------------------------------------

LISTEN_PROBE_SECONDS = 5.0  # how often a quiet listener checks its connection is alive
RECONNECT_FIRST_SECONDS = 0.25  # first wait before reconnecting; doubles up to the next
RECONNECT_MAX_SECONDS = 10.0
_LOST = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

Notified = Callable[[str], None]


async def notify(pool_: asyncpg.Pool, channel: str, payload: str) -> None:
    """``NOTIFY channel, payload`` (committed at once: every listener on the server hears it)."""
    async with pool_.acquire() as raw:
        await _guarded(raw.execute("SELECT pg_notify($1, $2)", channel, payload))


class _Listening:
    """One dedicated connection LISTENing on ``channel``; replaced after it is lost."""

    def __init__(self, url: str, channel: str, callback: Notified) -> None:
        self._url = url
        self._channel = channel
        self._callback = callback
        self._raw: asyncpg.Connection | None = None
        self._lost = asyncio.Event()

    def _heard(self, _raw: asyncpg.Connection, _pid: int, _channel: str, payload: str) -> None:
        self._callback(payload)

    def _terminated(self, _raw: asyncpg.Connection) -> None:
        self._lost.set()

    async def connect(self) -> None:
        """Open the connection and LISTEN (sqlite3.OperationalError when the server refuses)."""
        options = await asyncio.to_thread(connect_options, self._url)
        raw = await _guarded(asyncpg.connect(_without_sslmode(self._url), **options))
        try:
            await _guarded(raw.add_listener(self._channel, self._heard))
        except BaseException:
            raw.terminate()
            raise
        self._lost = asyncio.Event()
        raw.add_termination_listener(self._terminated)
        self._raw = raw

    async def _until_lost(self) -> str:
        """Wait until the connection dies (the server closed it, or a probe failed); why."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), LISTEN_PROBE_SECONDS)
            raw = self._raw
            if self._lost.is_set():
                return "connection closed"
            if raw is None or raw.is_closed():
                return "connection closed"
            try:
                await asyncio.wait_for(raw.execute("SELECT 1"), LISTEN_PROBE_SECONDS)
            except _LOST as exc:
                return str(exc) or type(exc).__name__

    async def keep(self) -> None:
        """Forever: notice the connection is lost, log it, reconnect with backoff (logged)."""
        while True:
            reason = await self._until_lost()
            if self._raw is not None:
                self._raw.terminate()
                self._raw = None
            log.warning("db_connection_lost", channel=self._channel, error=reason)
            lost_at = asyncio.get_running_loop().time()
            delay, attempts = RECONNECT_FIRST_SECONDS, 0
            while True:
                await asyncio.sleep(delay)
                attempts += 1
                try:
                    await self.connect()
                except (sqlite3.Error, *_LOST):
                    delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                else:
                    break
            log.info(
                "db_reconnected",
                channel=self._channel,
                attempts=attempts,
                down_seconds=round(asyncio.get_running_loop().time() - lost_at, 2),
            )

    async def close(self) -> None:
        if self._raw is not None:
            raw, self._raw = self._raw, None
            raw.remove_termination_listener(self._terminated)
            try:
                await asyncio.wait_for(raw.close(), LISTEN_PROBE_SECONDS)
            except (*_LOST, sqlite3.Error):
                raw.terminate()


@asynccontextmanager
async def listen(url: str, channel: str, callback: Notified) -> AsyncIterator[None]:
    """Call ``callback(payload)`` for each NOTIFY on ``channel`` until the block ends.

    A dedicated connection (not the pool's) LISTENs; when the server goes away it is
    logged (``db_connection_lost``) and replaced with backoff (``db_reconnected``).
    Notifications sent while it is away are lost. The first connection must succeed
    (sqlite3.OperationalError otherwise).
    """
    listening = _Listening(url, channel, callback)
    await listening.connect()
    keeper = asyncio.create_task(listening.keep(), name=f"listen-{channel}")
    try:
        yield
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await listening.close()
