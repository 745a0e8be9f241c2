"""Both daemons as real processes speak sd_notify to a real $NOTIFY_SOCKET, as under systemd."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from region.db.connection import migrations
from tests.fakes.daemons import DaemonProcess, free_port, region_daemon

pytestmark = pytest.mark.slow


@dataclass
class FakeSystemd:
    """The notify socket systemd would hold, and every message that reached it."""

    sock: socket.socket
    path: str
    messages: list[str] = field(default_factory=list)

    async def next(self, timeout: float = 30) -> str:
        """The next message (in arrival order)."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)
        self.messages.append(data.decode())
        return self.messages[-1]

    async def until(self, wanted: str, timeout: float = 30) -> str:
        """Read messages until one holds the line ``wanted`` (or starts with it); return it."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next()
                if any(line.startswith(wanted) for line in message.splitlines()):
                    return message

    def env(self) -> dict[str, str]:
        """What systemd sets for a Type=notify unit with WatchdogSec=0.2s."""
        return {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": "200000"}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: unix socket paths (ours and gpg-agent's) must stay short."""
    path = Path(tempfile.mkdtemp(prefix="bsn", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def systemd(short_dir: Path) -> Iterator[FakeSystemd]:
    """A bound AF_UNIX datagram socket, non-blocking for the test's event loop."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(short_dir / "notify"))
    sock.setblocking(False)
    yield FakeSystemd(sock=sock, path=str(short_dir / "notify"))
    sock.close()


@pytest.fixture
async def region(short_dir: Path, systemd: FakeSystemd) -> AsyncIterator[DaemonProcess]:
    """A region process (not yet started) with no boot source, under the fake systemd."""
    daemon = region_daemon(short_dir, short_dir / "data", env=systemd.env())
    yield daemon
    if daemon.proc is not None:
        await daemon.stop(signal.SIGKILL)


async def spawn(daemon: DaemonProcess) -> None:
    """Start ``daemon`` without waiting for it (READY=1 is what the test waits for)."""
    with daemon.log_path.open("ab") as log:
        daemon.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            daemon.module,
            *daemon.args,
            stdout=log,
            stderr=log,
            env={
                **os.environ,
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                **daemon.env,
            },
        )


async def get_status(url: str) -> int:
    """The HTTP status of GET ``url``."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status


def schema_version(db: Path) -> int:
    """PRAGMA user_version of the SQLite file ``db``."""
    with sqlite3.connect(db) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def test_the_region_is_ready_only_once_it_listens_with_a_migrated_database(
    region: DaemonProcess, systemd: FakeSystemd, short_dir: Path
) -> None:
    """READY=1 comes after the port answers and every migration is applied; then STATUS."""
    await spawn(region)
    ready = await systemd.until("READY=1")
    assert await get_status(region.url + "/healthz") == 200
    assert schema_version(short_dir / "data" / "region.db") == len(
        await asyncio.to_thread(migrations)
    )
    assert systemd.messages[0] == "STATUS=starting: opening the database"
    assert "STATUS=" in ready
    idle = await systemd.until("STATUS=idle, last import")
    assert idle.endswith(" UTC ok")


async def test_the_region_pings_the_watchdog_and_says_stopping_on_sigterm(
    region: DaemonProcess, systemd: FakeSystemd
) -> None:
    """WATCHDOG=1 keeps coming while it runs; SIGTERM brings STOPPING=1 and exit code 0."""
    await spawn(region)
    await systemd.until("READY=1")
    for _ in range(3):
        await systemd.until("WATCHDOG=1", timeout=5)
    assert region.proc is not None
    region.proc.send_signal(signal.SIGTERM)
    stopping = await systemd.until("STOPPING=1")
    assert "STATUS=stopping" in stopping
    assert await asyncio.wait_for(region.proc.wait(), 20) == 0
    assert region.events("regiond_stopped")


async def test_sighup_makes_the_region_apply_the_log_level_now_in_its_file(
    region: DaemonProcess, systemd: FakeSystemd, short_dir: Path
) -> None:
    """A changed [log] level takes effect on SIGHUP, without a restart."""
    await spawn(region)
    await systemd.until("READY=1")
    assert region.proc is not None
    config = short_dir / "regiond.toml"
    config.write_text(
        config.read_text().replace('format = "json"', 'format = "json"\nlevel = "warning"')
    )
    region.proc.send_signal(signal.SIGHUP)
    await region.wait_for_event("log_level_reloaded", timeout=20)
    assert region.events("log_level_reloaded")[0]["level"] == "warning"
    config.write_text(config.read_text().replace('level = "warning"', 'level = "loud"'))
    region.proc.send_signal(signal.SIGHUP)
    failed = (await region.wait_for_event("config_reload_failed", timeout=20))[0]
    assert "log.level: must be one of" in failed["error"]


async def test_the_rack_is_ready_once_it_listens_even_before_the_region_answers(
    short_dir: Path, systemd: FakeSystemd
) -> None:
    """The rack serves (livez) when READY=1 comes; SIGTERM brings STOPPING=1 and exit 0."""
    secret = short_dir / "secret"
    secret.write_text("rack-secret-for-tests\n")
    port = free_port()
    rack = DaemonProcess(
        "rack",
        [
            "--region",
            f"http://127.0.0.1:{free_port()}",
            "--secret-file",
            str(secret),
            "--data-dir",
            str(short_dir / "rack"),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        log_path=short_dir / "rackd.log",
        port=port,
        env={**systemd.env(), "BOOTSYNC_RACKD_LOG_FORMAT": "json"},
    )
    await spawn(rack)
    try:
        await systemd.until("READY=1")
        assert await get_status(rack.url + "/livez") == 200
        await systemd.until("WATCHDOG=1", timeout=5)
        assert rack.proc is not None
        rack.proc.send_signal(signal.SIGTERM)
        await systemd.until("STOPPING=1")
        assert await asyncio.wait_for(rack.proc.wait(), 20) == 0
        assert rack.events("rackd_stopped")
    finally:
        await rack.stop(signal.SIGKILL)
