"""The region database opens in WAL mode and applies every migration exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from region.db.connection import migrations, open_db, transaction


async def test_migrations_are_applied_once_and_recorded_in_user_version(tmp_path: Path) -> None:
    """A fresh file gets every migration; opening it again applies nothing new."""
    shipped = await asyncio.to_thread(migrations)
    async with open_db(tmp_path / "r.db") as conn:
        async with conn.execute("PRAGMA user_version") as cur:
            first = (await cur.fetchone())[0]  # type: ignore[index]
        async with conn.execute("PRAGMA journal_mode") as cur:
            mode = (await cur.fetchone())[0]  # type: ignore[index]
    async with open_db(tmp_path / "r.db") as conn, conn.execute("PRAGMA user_version") as cur:
        second = (await cur.fetchone())[0]  # type: ignore[index]
    assert first == second == len(shipped)
    assert mode == "wal"


def test_migration_files_are_numbered_without_gaps() -> None:
    """Shipped migrations are 0001, 0002, ... in order."""
    numbers = [n for n, _name, _sql in migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


async def test_a_failed_transaction_is_rolled_back(tmp_path: Path) -> None:
    """An exception inside transaction() leaves no row behind; a clean block commits."""
    async with open_db(tmp_path / "r.db") as conn:
        await conn.execute("CREATE TABLE t (x INTEGER)")
        await conn.commit()

        async def failing() -> None:
            async with transaction(conn):
                await conn.execute("INSERT INTO t VALUES (1)")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await failing()
        async with transaction(conn):
            await conn.execute("INSERT INTO t VALUES (2)")
        async with conn.execute("SELECT x FROM t") as cur:
            rows = [r[0] for r in await cur.fetchall()]
    assert rows == [2]
