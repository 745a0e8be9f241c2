"""``bootsync-regiond --check-config`` checks the database it would open."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from region.config import RegionConfig
from region.db.connection import migrations
from region.main import database_problem, main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_new_data_dir_passes_the_database_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no database yet (it is made at start) the check passes and says so."""
    assert main(["--check-config", "--data-dir", str(tmp_path)]) == 0
    assert "database: ok" in capsys.readouterr().out


def test_a_schema_newer_than_this_bootsync_is_refused(tmp_path: Path) -> None:
    """A database migrated by a newer bootsync is named as the problem, with both versions."""
    shipped = migrations()[-1][0]
    with sqlite3.connect(tmp_path / "region.db") as conn:
        conn.execute(f"PRAGMA user_version = {shipped + 1}")
    problem = database_problem(RegionConfig(data_dir=tmp_path))
    assert problem is not None
    assert f"version {shipped + 1}, newer than this bootsync's {shipped}" in problem


def test_an_unreachable_postgresql_server_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PostgreSQL URL nobody answers on exits 2 naming database.url."""
    url = f"postgresql://bootsync@127.0.0.1:{_free_port()}/bootsync"
    argv = ["--check-config", "--data-dir", str(tmp_path)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BOOTSYNC_REGIOND_DATABASE_URL", url)
        assert main(argv) == 2
    assert "database.url: cannot reach the database" in capsys.readouterr().err
