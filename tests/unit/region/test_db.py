"""The region database opens in WAL mode and applies every migration exactly once."""

from __future__ import annotations

from pathlib import Path

from region.db import migrations, open_db


async def test_migrations_are_applied_once_and_recorded_in_user_version(tmp_path: Path) -> None:
    """A fresh file gets every migration; opening it again applies nothing new."""
    shipped = migrations()
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
    assert [n for n, _name, _sql in migrations()] == list(range(1, len(migrations()) + 1))
