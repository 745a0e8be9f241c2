"""Secrets on disk: the daemons' data dirs are 0750 and every secret-bearing file 0600.

Under the default umask (0022) SQLite, gpg and plain writes would leave files
0644, readable by every local user; a data directory created beforehand as
0755 would stay so. Both daemons start here on such a directory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from rack.app import open_rack
from rack.config import RackConfig
from rack.identity import RACK_FILE
from region.config import DB_NAME
from tests.integration.region.rack_harness import start_region

Events = list[MutableMapping[str, Any]]
SECRET_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "rack-secret")


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The default umask, under which new files would be 0644 and directories 0755."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def tightened(log_events: Events) -> dict[str, tuple[str, str]]:
    """path → (was, now) of every data_dir_permissions_tightened event."""
    return {
        e["path"]: (e["was"], e["now"])
        for e in log_events
        if e["event"] == "data_dir_permissions_tightened"
    }


@pytest.mark.usefixtures("umask_022")
async def test_a_region_on_a_0755_data_dir_makes_it_0750_and_its_secrets_0600(
    data_dir: Path, aiohttp_client: AiohttpClient, log_events: Events
) -> None:
    """After start the data dir is 0750 (logged), region.db, its -wal and -shm and the rack
    secret are 0600, and the signing key's gpg home 0700."""
    data_dir.chmod(0o755)
    region = await start_region(data_dir, aiohttp_client)
    assert mode(data_dir) == 0o750
    assert {name: mode(data_dir / name) for name in SECRET_FILES} == dict.fromkeys(
        SECRET_FILES, 0o600
    )
    assert mode(data_dir / "gnupg") == 0o700
    assert tightened(log_events) == {str(data_dir): ("0755", "0750")}
    await region.client.close()


@pytest.mark.usefixtures("umask_022")
async def test_a_region_tightens_what_an_older_version_left_open(
    data_dir: Path, aiohttp_client: AiohttpClient, log_events: Events
) -> None:
    """State left 0644/0755 (as before this fix) is made private at the next start, each
    change logged; a file kept 0640 for the group is left as it is."""
    first = await start_region(data_dir, aiohttp_client)
    await first.client.close()
    data_dir.chmod(0o755)
    (data_dir / "gnupg").chmod(0o755)
    (data_dir / DB_NAME).chmod(0o644)
    (data_dir / f"{DB_NAME}-wal").touch()
    (data_dir / f"{DB_NAME}-wal").chmod(0o644)
    (data_dir / "rack-secret").chmod(0o640)
    log_events.clear()

    again = await start_region(data_dir, aiohttp_client)
    assert mode(data_dir) == 0o750
    assert mode(data_dir / "gnupg") == 0o700
    assert mode(data_dir / DB_NAME) == 0o600
    assert mode(data_dir / f"{DB_NAME}-wal") == 0o600
    assert mode(data_dir / "rack-secret") == 0o640
    assert tightened(log_events) == {
        str(data_dir): ("0755", "0750"),
        str(data_dir / "gnupg"): ("0755", "0700"),
        str(data_dir / DB_NAME): ("0644", "0600"),
        str(data_dir / f"{DB_NAME}-wal"): ("0644", "0600"),
    }
    await again.client.close()


@pytest.mark.usefixtures("umask_022")
async def test_a_rack_on_a_0755_data_dir_makes_it_0750(tmp_path: Path, log_events: Events) -> None:
    """The rack's data dir created beforehand as 0755 is 0750 once the rack has opened it."""
    data = tmp_path / "rack"
    data.mkdir(mode=0o755)
    (data / RACK_FILE).write_text('{"system_id": "abc123", "credential": "c"}')
    config = RackConfig(secret="s", data_dir=data, listen="127.0.0.1:5248", hostname="r")
    async with open_rack(config):
        pass
    assert mode(data) == 0o750
    assert mode(data / RACK_FILE) == 0o600
    assert tightened(log_events) == {
        str(data): ("0755", "0750"),
        str(data / RACK_FILE): ("0644", "0600"),
    }
