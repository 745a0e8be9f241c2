"""The engine-neutral connection the repositories write SQL against.

A :class:`Connection` runs one statement with ``?`` placeholders and gives a
:class:`Cursor` whose rows are already fetched (so no statement stays open and
pins a snapshot): rows are addressable by column name and by position on both
engines (``sqlite3.Row``, ``asyncpg.Record``). ``cursor.rowcount`` is the rows a
statement changed; ``cursor.lastrowid`` is the id of the row an
``INSERT ... RETURNING id`` made (the only portable way to learn it).
``conn.execute(...)`` is awaited or used as ``async with``, as aiosqlite's is.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Protocol

import aiosqlite

Params = Sequence[Any]


class Row(Protocol):
    """One result row: ``row["column"]`` or ``row[0]``."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Cursor:
    """The outcome of one statement, its rows fetched."""

    def __init__(self, rows: Sequence[Row], rowcount: int, lastrowid: int | None) -> None:
        self._rows = list(rows)
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    async def fetchone(self) -> Row | None:
        """The next row, or None."""
        return self._rows.pop(0) if self._rows else None

    async def fetchall(self) -> list[Row]:
        """Every row not fetched yet."""
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        """Nothing to release: the rows are already here."""


class Pending:
    """A statement to run: ``await`` it or ``async with`` it for its :class:`Cursor`."""

    def __init__(self, run: Callable[[], Awaitable[Cursor]]) -> None:
        self._run = run

    def __await__(self) -> Generator[Any, None, Cursor]:
        return self._run().__await__()

    async def __aenter__(self) -> Cursor:
        return await self._run()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class Connection:
    """What a repository holds inside ``db.read()`` / ``db.write()``."""

    dialect = ""

    def execute(self, sql: str, params: Params = ()) -> Pending:
        """Run one statement; see :class:`Cursor`."""
        raise NotImplementedError

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement once per parameter row."""
        raise NotImplementedError


class SqliteConnection(Connection):
    """An aiosqlite connection behind the neutral interface."""

    dialect = "sqlite"

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Params = ()) -> Pending:
        async def run() -> Cursor:
            async with self.raw.execute(sql, tuple(params)) as cur:
                rows = await cur.fetchall()
                return Cursor(list(rows), cur.rowcount, cur.lastrowid)

        return Pending(run)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self.raw.executemany(sql, [tuple(row) for row in rows])

    async def set_trace_callback(self, callback: Callable[..., Any]) -> None:
        """SQLite only: call ``callback`` with every statement run (tests hold a writer with it)."""
        await self.raw.set_trace_callback(callback)


_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\?")


def numbered_placeholders(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (not inside literals or comments)."""
    counter = 0

    def swap(match: re.Match[str]) -> str:
        nonlocal counter
        if match.group(0) != "?":
            return match.group(0)
        counter += 1
        return f"${counter}"

    return _TOKEN.sub(swap, sql)
