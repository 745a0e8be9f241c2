"""Copy a whole region database to another one: SQLite to PostgreSQL (or any pair).

``bootsync db copy --from sqlite:///.../region.db --to postgresql://user@host/db``
moves a region's state (sources, selections, users and keys, resources, racks,
config, import history, cluster tables, ...) so a site can grow into a cluster
without importing again. The tables and their columns are read from the two
databases' own catalogues, never listed here, so a table a later migration adds
is copied too; the migration bookkeeping (``schema_version``, ``sqlite_*``) is
not data and stays each engine's own.

Rules: both databases must be at the schema version this bootsync ships (the
target is made and migrated if it is new); the target must hold no row in any
table; everything is written in one target transaction (read from one source
snapshot) in foreign-key order, ids kept (PostgreSQL: ``OVERRIDING SYSTEM
VALUE``); each id sequence is then set past the largest id the source ever gave
(SQLite's ``sqlite_sequence``, PostgreSQL's sequence), so a new row never gets
an id an old script may still hold; the row counts of every table are compared
before the commit and read again after it. A refusal changes nothing. Each table
is read whole into memory (a region's tables are small; the blobs live in the store).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import BootsyncError
from common.ops.logging import get_logger
from region.db.connection import Connection, check_db, is_postgresql, open_db, sqlite_path

log = get_logger("db_copy")

_SQLITE_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)
_PG_TABLES = (
    "SELECT table_name FROM information_schema.tables"
    " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
)
BOOKKEEPING = frozenset({"schema_version"})  # PostgreSQL's migration record, not region data


class CopyRefusedError(BootsyncError):
    """The copy cannot start: nothing was written (the CLI exits 2)."""

    reason = "refused"


class TargetNotEmptyError(CopyRefusedError):
    """The target already holds rows (a copy would mix two regions)."""

    reason = "target_not_empty"

    def __init__(self, *, target: str, table: str, rows: int) -> None:
        self.target, self.table, self.rows = target, table, rows
        super().__init__(
            f"{target} is not empty: table {table} holds {rows} row(s); "
            "copy into a new, empty database"
        )


class SchemaMismatchError(CopyRefusedError):
    """The two databases' schemas differ (version, tables or columns)."""

    reason = "schema_mismatch"


class NoSourceError(CopyRefusedError):
    """The source holds no region database (a missing file, or an empty database)."""

    reason = "no_source"


class CountMismatchError(BootsyncError):
    """A table's row count differs after the copy (rolled back when seen before the commit)."""

    def __init__(self, *, table: str, source: int, target: int) -> None:
        self.table, self.source, self.target = table, source, target
        super().__init__(f"table {table}: {source} row(s) in the source, {target} after the copy")


@dataclass(frozen=True)
class TableCopy:
    """One table copied: its rows, verified in the target, and the next id it hands out."""

    name: str
    rows: int
    next_id: int | None  # None: the table has no generated id


@dataclass(frozen=True)
class CopyReport:
    """What a copy did, table by table in the order copied."""

    source: str
    target: str
    schema_version: int
    tables: tuple[TableCopy, ...]
    duration_s: float

    @property
    def rows(self) -> int:
        """Rows copied in all."""
        return sum(t.rows for t in self.tables)


def shown(target: Path | str) -> str:
    """``target`` for messages and logs: a URL without its password."""
    if is_postgresql(target):
        from region.db.postgres import redacted  # noqa: PLC0415 - asyncpg is an extra

        return redacted(str(target))
    return str(target)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- the catalogues ------------------------------------------------------------


async def _values(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    async with conn.execute(sql, params) as cur:
        return [row[0] for row in await cur.fetchall()]


async def tables(conn: Connection) -> list[str]:
    """The region's data tables on ``conn``, sorted by name (bookkeeping left out)."""
    found = await _values(conn, _PG_TABLES if conn.dialect == "postgresql" else _SQLITE_TABLES)
    return sorted(str(name) for name in found if name not in BOOKKEEPING)


async def columns(conn: Connection, table: str) -> list[str]:
    """The columns of ``table``, in the table's order."""
    if conn.dialect == "postgresql":
        sql = (
            "SELECT column_name FROM information_schema.columns WHERE"
            " table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position"
        )
    else:
        sql = "SELECT name FROM pragma_table_info(?) ORDER BY cid"
    return [str(name) for name in await _values(conn, sql, (table,))]


async def parents(conn: Connection, table: str) -> set[str]:
    """The tables ``table``'s foreign keys point at (itself left out)."""
    if conn.dialect == "postgresql":
        sql = (
            "SELECT DISTINCT confrelid::regclass::text FROM pg_constraint"
            " WHERE contype = 'f' AND conrelid = ?::regclass"
        )
        found = await _values(conn, sql, (_quote(table),))
    else:
        found = await _values(
            conn, 'SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)', (table,)
        )
    return {str(name).strip('"') for name in found} - {table}


async def identity(conn: Connection, table: str) -> str | None:
    """The column whose values the database generates (and never reuses), or None."""
    if conn.dialect == "postgresql":
        sql = (
            "SELECT column_name FROM information_schema.columns WHERE"
            " table_schema = current_schema() AND table_name = ? AND is_identity = 'YES'"
        )
        found = await _values(conn, sql, (table,))
        return str(found[0]) if found else None
    ddl = await _values(
        conn, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    )
    if not ddl or "AUTOINCREMENT" not in str(ddl[0]).upper():
        return None
    found = await _values(conn, "SELECT name FROM pragma_table_info(?) WHERE pk = 1", (table,))
    return str(found[0]) if len(found) == 1 else None


async def issued(conn: Connection, table: str, column: str) -> int:
    """The largest id the database ever handed out for ``table`` (0: none yet)."""
    if conn.dialect == "postgresql":
        found = await _values(
            conn,
            "SELECT pg_sequence_last_value(pg_get_serial_sequence(?, ?)::regclass)",
            (_quote(table), column),
        )
    else:
        found = await _values(conn, "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,))
    return int(found[0]) if found and found[0] is not None else 0


async def reserve(conn: Connection, table: str, column: str, last: int) -> None:
    """Make the next generated id of ``table`` greater than ``last``."""
    if last <= 0:
        return
    if conn.dialect == "postgresql":
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence(?, ?)::regclass, ?, true)",
            (_quote(table), column, last),
        )
        return
    cur = await conn.execute(
        "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (last, table)
    )
    if cur.rowcount == 0:
        await conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, last))


async def count(conn: Connection, table: str) -> int:
    """Rows in ``table``."""
    (rows,) = await _values(conn, f"SELECT COUNT(*) FROM {_quote(table)}")  # noqa: S608 - catalogue name
    return int(rows)


def copy_order(deps: dict[str, set[str]]) -> list[str]:
    """Tables parents first (then by name); ValueError on a foreign-key cycle."""
    done: list[str] = []
    left = {table: {parent for parent in ps if parent in deps} for table, ps in deps.items()}
    while left:
        ready = sorted(t for t, ps in left.items() if not ps - set(done))
        if not ready:
            raise ValueError(f"foreign keys form a cycle among {sorted(left)}")
        for table in ready:
            done.append(table)
            del left[table]
    return done


# --- the copy -------------------------------------------------------------------


async def _check_versions(source: Path | str, target: Path | str) -> int:
    """The schema version both are at (the target may be new); SchemaMismatchError if not."""
    if not is_postgresql(source) and not await asyncio.to_thread(sqlite_path(source).is_file):
        raise NoSourceError(f"{shown(source)}: no such database file")
    found, shipped = await check_db(source)
    if found == 0:
        raise NoSourceError(f"{shown(source)} holds no region database (schema version 0)")
    if found != shipped:
        raise SchemaMismatchError(
            f"{shown(source)} is at schema version {found}, this bootsync's is {shipped}: "
            "run the region of this version on it once (it migrates at start), then copy"
        )
    there, _ = await check_db(target)
    if there not in (0, shipped):
        raise SchemaMismatchError(
            f"{shown(target)} is at schema version {there}, the source at {found}: "
            "copy into a new, empty database"
        )
    return found


async def _plan(src: Connection, dst: Connection) -> list[tuple[str, list[str], str | None]]:
    """(table, columns, id column) in copy order; SchemaMismatchError if the schemas differ."""
    names, theirs = await tables(src), await tables(dst)
    if names != theirs:
        only_source = sorted(set(names) - set(theirs))
        only_target = sorted(set(theirs) - set(names))
        raise SchemaMismatchError(
            f"the schemas differ: tables only in the source {only_source}, "
            f"only in the target {only_target}"
        )
    plan: dict[str, tuple[list[str], str | None]] = {}
    deps: dict[str, set[str]] = {}
    for table in names:
        mine, wanted = await columns(src, table), await columns(dst, table)
        if set(mine) != set(wanted):
            raise SchemaMismatchError(
                f"the schemas differ: table {table} has columns {sorted(mine)} in the source, "
                f"{sorted(wanted)} in the target"
            )
        plan[table] = (wanted, await identity(dst, table))
        deps[table] = await parents(dst, table)
    return [(table, *plan[table]) for table in copy_order(deps)]


def _insert_sql(dialect: str, table: str, cols: list[str], generated: bool) -> str:
    names = ", ".join(_quote(c) for c in cols)
    marks = ", ".join("?" for _ in cols)
    override = " OVERRIDING SYSTEM VALUE" if generated and dialect == "postgresql" else ""
    return f"INSERT INTO {_quote(table)} ({names}){override} VALUES ({marks})"  # noqa: S608


async def _copy_table(
    src: Connection, dst: Connection, table: str, cols: list[str], id_column: str | None
) -> TableCopy:
    select = f"SELECT {', '.join(_quote(c) for c in cols)} FROM {_quote(table)}"  # noqa: S608
    async with src.execute(select) as cur:
        rows = [tuple(row) for row in await cur.fetchall()]
    await dst.executemany(_insert_sql(dst.dialect, table, cols, id_column is not None), rows)
    there = await count(dst, table)
    if there != len(rows):
        raise CountMismatchError(table=table, source=len(rows), target=there)
    if id_column is None:
        return TableCopy(table, there, None)
    position = cols.index(id_column)
    largest = max((int(row[position]) for row in rows), default=0)
    src_id = await identity(src, table)
    ever = await issued(src, table, src_id) if src_id else 0
    last = max(largest, ever)
    await reserve(dst, table, id_column, last)
    return TableCopy(table, there, last + 1)


async def copy_database(
    source: Path | str,
    target: Path | str,
    *,
    on_table: Callable[[TableCopy], None] | None = None,
) -> CopyReport:
    """Copy every table of ``source`` into the empty ``target``; see the module's rules.

    ``on_table`` is called as each table is copied (and verified). Raises
    CopyRefusedError (nothing written), CountMismatchError (rolled back), or
    sqlite3.Error / OSError when a database cannot be reached.
    """
    start = time.monotonic()
    try:
        version = await _check_versions(source, target)
        async with open_db(source, readers=1) as src_db, open_db(target, readers=1) as dst_db:
            async with src_db.read() as src, dst_db.write() as dst:
                plan = await _plan(src, dst)
                for table, _cols, _id in plan:
                    rows = await count(dst, table)
                    if rows:
                        raise TargetNotEmptyError(target=shown(target), table=table, rows=rows)
                log.info(
                    "db_copy_started",
                    source=shown(source),
                    target=shown(target),
                    schema_version=version,
                    tables=len(plan),
                )
                copied = []
                for table, cols, id_column in plan:
                    done = await _copy_table(src, dst, table, cols, id_column)
                    copied.append(done)
                    if on_table is not None:
                        on_table(done)
            async with dst_db.read() as committed:  # what another connection now sees
                for done in copied:
                    there = await count(committed, done.name)
                    if there != done.rows:
                        raise CountMismatchError(table=done.name, source=done.rows, target=there)
    except CopyRefusedError as exc:
        log.warning(
            "db_copy_refused",
            source=shown(source),
            target=shown(target),
            reason=exc.reason,
            error=str(exc),
        )
        raise
    report = CopyReport(
        source=shown(source),
        target=shown(target),
        schema_version=version,
        tables=tuple(copied),
        duration_s=round(time.monotonic() - start, 3),
    )
    log.info(
        "db_copy_finished",
        source=report.source,
        target=report.target,
        tables=len(report.tables),
        rows=report.rows,
        duration_s=report.duration_s,
    )
    return report
