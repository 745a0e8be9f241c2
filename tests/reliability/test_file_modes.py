"""File modes of real daemons under the default umask: data dirs 0750, secrets 0600.

A real ``bootsync-regiond`` and a real ``bootsync-rackd`` start under umask
0022 (new files would be 0644, directories 0755) on data directories an
operator created beforehand as 0755; the rack registers and syncs. Then, with
both still running, every data directory is at most 0750, every
secret-bearing file 0600 (the region's database with its -wal and -shm: API
tokens; the rack secret; the rack's own credential), the signing key's gpg
home 0700, and nothing under either data directory is writable by others.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from rack.identity import RACK_FILE
from region.config import DB_NAME
from tests.fakes.daemons import DaemonProcess, bootsync, free_port, region_daemon
from tests.fakes.streams import short_dir

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Hosts:
    """The two daemons' data directories, while both run."""

    region: Path
    rack: Path


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """A short directory holding both data directories."""
    with short_dir("bsf") as path:
        yield path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hosts(work: Path) -> AsyncIterator[Hosts]:
    """Both daemons started under umask 0022 on data dirs made 0755, the rack registered."""
    region_data, rack_data = work / "region", work / "rack"
    for path in (region_data, rack_data):
        path.mkdir(mode=0o755)
        path.chmod(0o755)
    previous = os.umask(0o022)  # the children inherit it
    try:
        region = region_daemon(work, region_data)
        await region.start()
        secret = work / "secret"
        secret.write_text(await bootsync("rack-secret", "--data-dir", str(region_data)) + "\n")
        port = free_port()
        config = work / "rack.toml"
        config.write_text('[server]\nhostname = "modes"\n[log]\nformat = "json"\n')
        rack = DaemonProcess(
            "rack",
            [
                "--config",
                str(config),
                "--region",
                region.url,
                "--secret-file",
                str(secret),
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(rack_data),
            ],
            log_path=work / "rack.log",
            port=port,
        )
        await rack.start(ready_path="/livez")
    finally:
        os.umask(previous)
    try:
        await rack.wait_for_event("pull_finished", timeout=60)
        yield Hosts(region_data, rack_data)
    finally:
        await rack.stop()
        await region.stop()


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


REGION_SECRETS = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "rack-secret")


@pytest.mark.parametrize("daemon", ["region", "rack"])
async def test_a_data_dir_made_0755_beforehand_is_0750(hosts: Hosts, daemon: str) -> None:
    """The daemon takes group write and all of other's bits from its data directory."""
    assert mode(getattr(hosts, daemon)) == 0o750


@pytest.mark.parametrize("name", REGION_SECRETS)
async def test_each_region_secret_is_0600_under_umask_022(hosts: Hosts, name: str) -> None:
    """The region database (API tokens), its WAL and shared memory, and the rack secret."""
    assert mode(hosts.region / name) == 0o600


async def test_the_region_signing_key_home_is_0700(hosts: Hosts) -> None:
    """The gpg home holding the region's secret key is the owner's alone, as is each secret key."""
    home = hosts.region / "gnupg"
    assert mode(home) == 0o700
    keys = list((home / "private-keys-v1.d").glob("*.key"))
    assert keys
    assert [oct(mode(k)) for k in keys] == [oct(0o600)] * len(keys)


async def test_the_rack_credential_file_is_0600_under_umask_022(hosts: Hosts) -> None:
    """The rack's identity file holds its own credential: the owner's alone."""
    assert mode(hosts.rack / RACK_FILE) == 0o600


@pytest.mark.parametrize("daemon", ["region", "rack"])
async def test_nothing_under_a_data_dir_is_writable_by_others(hosts: Hosts, daemon: str) -> None:
    """No file or directory a daemon keeps grants others write (whatever it holds)."""

    def writable() -> list[str]:
        root = getattr(hosts, daemon)
        return [
            f"{p}: {oct(mode(p))}"
            for p in (root, *root.rglob("*"))
            if not p.is_symlink() and mode(p) & stat.S_IWOTH
        ]

    assert not await asyncio.to_thread(writable)
