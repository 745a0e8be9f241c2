"""``bootsync apikey`` and ``createadmin`` on a region whose ``[database] url`` is PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from region.db import users as repo_users
from region.db import web_auth
from region.db.connection import open_db
from tests.fakes.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[3]


async def bootsync(*args: str) -> tuple[int, str, str]:
    """Run the real ``bootsync`` CLI; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def region_config(tmp_path: Path, url: str) -> Path:
    """A region config whose database is ``url`` (data_dir exists but holds no region.db)."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "regiond.toml"
    config.write_text(
        f'[storage]\ndata_dir = "{data}"\n\n[database]\nurl = "{url}"\n', encoding="utf-8"
    )
    return config


async def test_apikey_and_createadmin_write_to_the_configured_postgresql(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """Keys printed by both commands belong to users in PostgreSQL; no SQLite file is made."""
    url = await postgres_server.new_database()
    config = region_config(tmp_path, url)
    code, out, err = await bootsync("apikey", "--username", "alice", "--config", str(config))
    assert code == 0, err
    alice_key = out.strip().split(":")
    code, out, err = await bootsync(
        "createadmin", "--username", "root", "--password", "correct horse battery",
        "--config", str(config),
    )  # fmt: skip
    assert code == 0, err
    root_key = out.strip().split(":")
    async with open_db(url, readers=1) as db:
        alice = await repo_users.user_for_token(db, *alice_key)
        root = await repo_users.user_for_token(db, *root_key)
        logged_in = await web_auth.authenticate(db, "root", "correct horse battery")
    assert alice is not None
    assert (alice.username, alice.is_admin) == ("alice", False)
    assert root is not None
    assert (root.username, root.is_admin) == ("root", True)
    assert logged_in is not None
    assert not (tmp_path / "data" / "region.db").exists()


async def test_an_unreachable_postgresql_is_a_config_error_without_the_password(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A server that refuses the connection exits 1 naming the URL, its password hidden."""
    url = postgres_server.url("postgres").replace(
        f"bootsync@127.0.0.1:{postgres_server.port}", "bootsync:hunter2@127.0.0.1:1"
    )
    config = region_config(tmp_path, url)
    code, out, err = await bootsync("apikey", "--username", "alice", "--config", str(config))
    assert code == 1
    assert out == ""
    assert "cannot use the region database" in err
    assert "hunter2" not in err
