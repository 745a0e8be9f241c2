"""Slowloris against the real daemons: ``bootsync-regiond`` and ``bootsync-rackd`` processes
close connections that send no request and refuse one address past its connection limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.daemons import DaemonProcess, free_port

pytestmark = pytest.mark.slow

LIMITS = '[server]\nheader_timeout_s = 1\nmax_client_connections = 20\n[log]\nformat = "json"\n'
READY = {"region": "/healthz", "rack": "/livez"}  # 200 as soon as each daemon serves


def regiond(tmp_path: Path, data_dir: Path) -> DaemonProcess:
    """A region with no sources, a 1 s header timeout and 20 connections per client."""
    config = tmp_path / "regiond.toml"
    config.write_text("[import]\ncreate_default_source = false\n" + LIMITS)
    port = free_port()
    return DaemonProcess(
        "region",
        ["--config", str(config), "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
        log_path=tmp_path / "regiond.log",
        port=port,
    )


def rackd(tmp_path: Path) -> DaemonProcess:
    """A rack (its region nowhere) with the same limits."""
    config = tmp_path / "rackd.toml"
    config.write_text(
        f'[region]\nurls = ["http://127.0.0.1:{free_port()}"]\nsecret = "s"\n' + LIMITS
    )
    port = free_port()
    return DaemonProcess(
        "rack",
        [
            "--config",
            str(config),
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path / "rack"),
        ],
        log_path=tmp_path / "rackd.log",
        port=port,
    )


@pytest.fixture(params=["region", "rack"])
async def daemon(
    request: pytest.FixtureRequest, tmp_path: Path, data_dir: Path
) -> AsyncIterator[tuple[DaemonProcess, bytes]]:
    """Each daemon in turn, started, and a request it answers 200."""
    process = regiond(tmp_path, data_dir) if request.param == "region" else rackd(tmp_path)
    ready = READY[request.param]
    await process.start(ready_path=ready)
    try:
        yield process, f"GET {ready} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
    finally:
        assert await process.stop() == 0


async def test_silent_connections_are_closed_and_one_address_is_capped(
    daemon: tuple[DaemonProcess, bytes],
) -> None:
    """20 connections that send nothing fill 127.0.0.1's quota, so a 21st is refused with a
    503 while 127.0.0.2 is served; the 20 are closed about a second later, after which
    127.0.0.1 is served again."""
    process, ready = daemon
    writers: list[asyncio.StreamWriter] = []

    async def connect(source: str = "127.0.0.1") -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", process.port, local_addr=(source, 0)
        )
        writers.append(writer)
        return reader

    async def read_all(reader: asyncio.StreamReader) -> bytes:
        async with asyncio.timeout(10):
            return await reader.read()

    try:
        started = time.monotonic()
        silent = [await connect() for _ in range(20)]
        refused = await read_all(await connect())
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable")
        other = await connect("127.0.0.2")
        writers[-1].write(ready)
        assert (await read_all(other)).startswith(b"HTTP/1.1 200")
        assert [await read_all(r) for r in silent] == [b""] * 20
        assert time.monotonic() - started < 8
        again = await connect()
        writers[-1].write(ready)
        assert (await read_all(again)).startswith(b"HTTP/1.1 200")
    finally:
        for writer in writers:
            writer.close()
    limited = process.events("client_connections_limited")
    assert [(e["remote"], e["limit"]) for e in limited] == [("127.0.0.1", 20)]
