"""The serve loop both daemons share: READY, then a stop signal, a drain that waits, then stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import tempfile
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from prometheus_client.core import Metric

from common.ops import metrics
from common.ops.daemon import Milestones, drain, serve
from common.ops.logging import LogFormat
from common.ops.sdnotify import Notifier
from tests.fakes.daemons import free_port


@dataclass
class Job:
    """A :class:`common.ops.daemon.Work` whose end the test decides (set ``done``)."""

    busy: bool = True
    name: str = "job"
    done: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    cancelled: bool = False

    def close(self) -> None:
        """Remember that no new job may start."""
        self.closed = True

    def running(self) -> bool:
        """Busy until ``done`` is set."""
        return self.busy and not self.done.is_set()

    async def finished(self) -> None:
        """Wait for ``done``."""
        await self.done.wait()

    async def cancel(self) -> None:
        """End the job at once, remembering that it was cancelled."""
        self.cancelled = True
        self.done.set()


@dataclass(frozen=True)
class Settings:
    """What serve reads from a daemon's configuration."""

    listen_port: int
    listen_host: str = "127.0.0.1"
    shutdown_grace_s: int = 30
    header_timeout_s: int = 10
    max_client_connections: int = 64
    metrics_listen: str = ""
    metrics_token: str = ""
    log_level: str = "info"
    log_format: LogFormat = "json"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """serve taps the log events (a process-wide setting): put the old configuration back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def systemd() -> Iterator[socket.socket]:
    """A bound datagram socket standing in for $NOTIFY_SOCKET (short path, non-blocking)."""
    home = Path(tempfile.mkdtemp(prefix="sdv", dir="/tmp"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(home / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()
    (home / "notify").unlink()
    home.rmdir()


def milestones(said: list[str]) -> Milestones:
    """Milestones that append their name to ``said``."""
    return Milestones(
        listening=lambda: said.append("listening"),
        stopping=lambda: said.append("stopping"),
        stopped=lambda: said.append("stopped"),
    )


async def next_message(sock: socket.socket) -> str:
    """The next datagram systemd would receive."""
    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 10)
    return data.decode()


async def test_drain_without_running_work_only_closes(
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """Idle work is closed to new starts and drain returns without waiting or logging."""
    job = Job(busy=False)
    await drain(job, grace_s=30)
    assert job.closed
    assert not job.cancelled
    assert [e["event"] for e in log_events] == []


async def test_drain_waits_for_work_that_ends_within_the_grace_period(
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """A job ending before the grace period is awaited, not cancelled, and the wait is logged."""
    job = Job()
    asyncio.get_running_loop().call_later(0.05, job.done.set)
    await drain(job, grace_s=30)
    assert job.closed
    assert job.done.is_set()
    assert not job.cancelled
    assert [(e["event"], e["work"], e["grace_s"]) for e in log_events] == [
        ("shutdown_waiting", "job", 30)
    ]


async def test_drain_cancels_work_still_running_after_the_grace_period(
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """A job outlasting the grace period is cancelled and the expiry is logged as a warning."""
    job = Job()
    await drain(job, grace_s=0.05)
    assert job.cancelled
    assert [(e["event"], e["log_level"]) for e in log_events] == [
        ("shutdown_waiting", "info"),
        ("shutdown_grace_expired", "warning"),
    ]


@pytest.mark.usefixtures("restore_logging")
async def test_serve_is_ready_then_drains_while_serving_and_stops_at_sigterm(
    systemd: socket.socket,
) -> None:
    """READY=1 once it listens; SIGTERM sends STOPPING=1, the server answers until the work
    ends, then it closes, and each milestone is announced in order."""
    job = Job()
    said: list[str] = []

    async def finish(request: web.Request) -> web.Response:
        job.done.set()
        return web.Response(text="finishing")

    app = web.Application()
    app.router.add_get("/finish", finish)
    settings = Settings(listen_port=free_port())
    url = f"http://127.0.0.1:{settings.listen_port}/finish"
    task = asyncio.create_task(
        serve(
            app,
            settings,
            work=lambda served: job if served is app else Job(name="wrong app"),
            milestones=milestones(said),
            starting="starting: warming up",
            notifier=Notifier({"NOTIFY_SOCKET": systemd.getsockname()}),
        )
    )
    assert await next_message(systemd) == "STATUS=starting: warming up"
    assert (await next_message(systemd)).startswith("READY=1\n")
    assert said == ["listening"]
    os.kill(os.getpid(), signal.SIGTERM)
    assert (await next_message(systemd)).startswith("STOPPING=1\n")
    assert said == ["listening", "stopping"]
    assert not task.done()  # draining: the job still runs, and the server still answers
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert (resp.status, await resp.text()) == (200, "finishing")
    await asyncio.wait_for(task, 10)
    assert said == ["listening", "stopping", "stopped"]
    assert job.closed
    assert not job.cancelled
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(url):
            pass


@pytest.mark.usefixtures("restore_logging")
async def test_serve_cancels_work_outlasting_the_grace_period_and_still_stops() -> None:
    """With a grace period of 0, SIGINT cancels the running work and serve returns."""
    job = Job()
    said: list[str] = []
    task = asyncio.create_task(
        serve(
            web.Application(),
            Settings(listen_port=free_port(), shutdown_grace_s=0),
            work=lambda _app: job,
            milestones=milestones(said),
            notifier=Notifier({}),
        )
    )
    async with asyncio.timeout(10):
        while said != ["listening"]:
            await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.wait_for(task, 10)
    assert job.cancelled
    assert said == ["listening", "stopping", "stopped"]


@pytest.mark.usefixtures("restore_logging")
async def test_serve_raises_when_the_port_is_taken_and_leaves_no_signal_handler() -> None:
    """A bound port is an OSError for the caller; SIGTERM's default action is back."""
    said: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="address already in use"):
            await serve(
                web.Application(),
                Settings(listen_port=port),
                work=lambda _app: Job(busy=False),
                milestones=milestones(said),
                notifier=Notifier({}),
            )
    assert said == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


async def idle_connection(port: int, writers: list[asyncio.StreamWriter]) -> asyncio.StreamReader:
    """A connection to ``port`` that sends nothing; its reader (its writer goes to ``writers``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writers.append(writer)
    return reader


@pytest.mark.usefixtures("restore_logging")
async def test_serve_closes_idle_connections_caps_each_client_and_serves_metrics_apart() -> None:
    """The daemons' server: connections without a request head close after
    header_timeout_s, a third connection from one address is refused 503 while another
    address is served, and /metrics is only on metrics_listen, behind its token."""
    said: list[str] = []
    writers: list[asyncio.StreamWriter] = []
    app = web.Application()
    app.router.add_get("/hello", _hello)
    app[metrics.LIVE_METRICS] = _live
    settings = Settings(
        listen_port=free_port(),
        header_timeout_s=1,
        max_client_connections=2,
        metrics_listen=f"127.0.0.1:{free_port()}",
        metrics_token="s3cret-token",
    )
    task = asyncio.create_task(
        serve(
            app,
            settings,
            work=lambda _app: Job(busy=False),
            milestones=milestones(said),
            notifier=Notifier({}),
        )
    )
    try:
        async with asyncio.timeout(10):
            while said != ["listening"]:
                await asyncio.sleep(0.01)
        port = settings.listen_port
        idle = [await idle_connection(port, writers) for _ in range(2)]
        refused = await idle_connection(port, writers)
        async with asyncio.timeout(5):
            assert (await refused.read()).startswith(b"HTTP/1.1 503 ")
        base, metrics_url = f"http://127.0.0.1:{port}", f"http://{settings.metrics_listen}"
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as other:
            async with other.get(base + "/hello") as resp:
                assert (resp.status, await resp.text()) == (200, "hello")
            async with other.get(base + "/metrics") as resp:
                assert resp.status == 404
            async with other.get(metrics_url + "/metrics") as resp:
                assert resp.status == 401
            bearer = {"Authorization": "Bearer s3cret-token"}
            async with other.get(metrics_url + "/metrics", headers=bearer) as resp:
                assert resp.status == 200
                assert "bootsync_test_live 7.0" in await resp.text()
        async with asyncio.timeout(5):
            assert [await reader.read() for reader in idle] == [b"", b""]
        async with aiohttp.ClientSession() as session, session.get(base + "/hello") as resp:
            assert resp.status == 200  # the closed idle ones no longer count
    finally:
        for writer in writers:
            writer.close()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 10)
    assert said == ["listening", "stopping", "stopped"]


async def _hello(_request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def _live() -> list[Metric]:
    return metrics.gauge("bootsync_test_live", "A scrape-time value.", 7.0)
