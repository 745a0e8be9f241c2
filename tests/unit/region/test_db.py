"""The region database: WAL, migrations once, one writer, readers that see only commits."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from region.db import imports as repo_import
from region.db import resources as repo_resources
from region.db.connection import Database, migrations, open_db
from region.db.imports import WantedFile, WantedSet

NOW = "2025-01-01T00:00:00"


async def pragma(db: Database, name: str) -> object:
    """The value of ``PRAGMA name`` on a reader."""
    async with db.read() as conn, conn.execute(f"PRAGMA {name}") as cur:
        row = await cur.fetchone()
    assert row is not None
    return row[0]


async def count(db: Database) -> int:
    """Rows in ``config``, read on a reader."""
    async with db.read() as conn, conn.execute("SELECT COUNT(*) FROM config") as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def add_config(db: Database, name: str) -> None:
    """Insert one ``config`` row in its own write."""
    async with db.write() as conn:
        await conn.execute("INSERT INTO config (name, value) VALUES (?, '1')", (name,))


def wanted(name: str) -> WantedSet:
    """A synced image with one stored 10-byte squashfs."""
    return WantedSet(
        name=name,
        architecture="amd64/generic",
        kflavor=None,
        bootloader_type=None,
        rolling=False,
        extra={},
        version="20250101",
        label="stable",
        files=(WantedFile("squashfs", "squashfs", "a" * 64, 10),),
    )


async def test_migrations_are_applied_once_and_recorded_in_user_version(tmp_path: Path) -> None:
    """A fresh file gets every migration; opening it again applies nothing new."""
    shipped = await asyncio.to_thread(migrations)
    async with open_db(tmp_path / "r.db") as db:
        first = await pragma(db, "user_version")
        mode = await pragma(db, "journal_mode")
    async with open_db(tmp_path / "r.db") as db:
        second = await pragma(db, "user_version")
    assert first == second == len(shipped)
    assert mode == "wal"


def test_migration_files_are_numbered_without_gaps() -> None:
    """Shipped migrations are 0001, 0002, ... in order."""
    numbers = [n for n, _name, _sql in migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


async def test_a_failed_write_is_rolled_back(tmp_path: Path) -> None:
    """An exception inside write() leaves no row behind; a clean block commits."""
    async with open_db(tmp_path / "r.db") as db:

        async def failing() -> None:
            async with db.write() as conn:
                await conn.execute("INSERT INTO config (name, value) VALUES ('x', '1')")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await failing()
        after_failure = await count(db)
        await add_config(db, "y")
        after_commit = await count(db)
    assert (after_failure, after_commit) == (0, 1)


async def test_a_read_during_an_open_write_sees_the_last_committed_state(tmp_path: Path) -> None:
    """Rows of an open write are invisible to list_resources until the write commits."""
    async with open_db(tmp_path / "r.db") as db:
        await repo_import.write_wanted(db, [wanted("ubuntu/noble")], {"a" * 64: 10})
        async with db.write() as conn:
            await conn.execute("DELETE FROM boot_resource_files")
            await conn.execute(
                "INSERT INTO boot_resources (rtype, name, architecture, extra, created, updated) "
                "VALUES (0, 'ubuntu/jammy', 'amd64/generic', '{}', ?, ?)",
                (NOW, NOW),
            )
            during = await repo_resources.list_resources(db)
            async with conn.execute("SELECT name FROM boot_resources ORDER BY name") as cur:
                own = [row["name"] for row in await cur.fetchall()]
        after = await repo_resources.list_resources(db)
    assert [(r.name, t is not None and t.complete) for r, t in during] == [("ubuntu/noble", True)]
    assert own == ["ubuntu/jammy", "ubuntu/noble"]
    assert [(r.name, t is not None and t.complete) for r, t in after] == [
        ("ubuntu/jammy", False),
        ("ubuntu/noble", False),
    ]


async def test_a_read_block_keeps_one_snapshot(tmp_path: Path) -> None:
    """A commit made while a read block is open shows in the next read, not in that block."""
    async with open_db(tmp_path / "r.db") as db:
        async with db.read() as conn:
            async with conn.execute("SELECT COUNT(*) FROM config") as cur:
                before = (await cur.fetchone())[0]  # type: ignore[index]
            await add_config(db, "x")
            async with conn.execute("SELECT COUNT(*) FROM config") as cur:
                still = (await cur.fetchone())[0]  # type: ignore[index]
        fresh = await count(db)
    assert (before, still, fresh) == (0, 0, 1)


async def test_nothing_can_be_written_through_a_reader(tmp_path: Path) -> None:
    """Reader connections are query_only: a write on one fails and changes nothing."""
    async with open_db(tmp_path / "r.db") as db:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            async with db.read() as conn:
                await conn.execute("INSERT INTO config (name, value) VALUES ('x', '1')")
        left = await count(db)
    assert left == 0


async def test_writes_take_turns(tmp_path: Path) -> None:
    """A second write waits until the first write's transaction has ended."""
    async with open_db(tmp_path / "r.db") as db:
        order: list[str] = []
        inside = asyncio.Event()
        leave = asyncio.Event()

        async def first() -> None:
            async with db.write() as conn:
                order.append("first begins")
                await conn.execute("INSERT INTO config (name, value) VALUES ('a', '1')")
                inside.set()
                await leave.wait()
                order.append("first ends")

        async def second() -> None:
            await inside.wait()
            async with db.write():
                order.append("second begins")

        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
        await inside.wait()
        await asyncio.sleep(0.05)
        leave.set()
        await asyncio.gather(*tasks)
    assert order == ["first begins", "first ends", "second begins"]


async def test_reads_wait_for_a_free_reader_and_reuse_it(tmp_path: Path) -> None:
    """With every reader lent out a read waits; it gets the connection once one is returned."""
    async with open_db(tmp_path / "r.db", readers=1) as db:
        lent = db.read()
        conn = await lent.__aenter__()
        waiting = asyncio.create_task(count(db))
        await asyncio.sleep(0.05)
        blocked = not waiting.done()
        await lent.__aexit__(None, None, None)
        rows = await asyncio.wait_for(waiting, timeout=5)
        async with db.read() as again:
            same = again is conn
    assert blocked
    assert rows == 0
    assert same
