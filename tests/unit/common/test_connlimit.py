"""Slowloris: idle and half-sent connections are closed, and one address holds only so many.

Real aiohttp servers on 127.0.0.1 and real client sockets: the header timeout is
aiohttp's own keep-alive timer (armed when a connection opens), so an aiohttp
release that stops closing a connection without a request head fails here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from aiohttp import web

from common.ops.connlimit import ConnectionLimits, LimitedTCPSite, make_runner, start_site

Events = list[MutableMapping[str, Any]]
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
REQUEST = b"GET /hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


async def hello(request: web.Request) -> web.StreamResponse:
    """A small answer."""
    return web.Response(text="hello")


async def slow(request: web.Request) -> web.StreamResponse:
    """An answer that takes longer than the header timeout (a download, an event stream)."""
    resp = web.StreamResponse()
    await resp.prepare(request)
    for _ in range(3):
        await asyncio.sleep(0.4)
        await resp.write(b"tick\n")
    return resp


@asynccontextmanager
async def server(limits: ConnectionLimits) -> AsyncIterator[LimitedTCPSite]:
    """An app on 127.0.0.1 (a free port) served with ``limits``."""
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/slow", slow)
    runner = make_runner(app, limits, shutdown_timeout=1)
    await runner.setup()
    try:
        yield await start_site(runner, "127.0.0.1", 0, limits, backlog=128)
    finally:
        await runner.cleanup()


@pytest.fixture
async def opened() -> AsyncIterator[list[Conn]]:
    """Where :func:`connect` keeps the test's connections; all are closed afterwards."""
    conns: list[Conn] = []
    yield conns
    for _, writer in conns:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


async def connect(opened: list[Conn], site: LimitedTCPSite, source: str = "127.0.0.1") -> Conn:
    """A TCP connection to ``site`` from the local address ``source`` (kept in ``opened``)."""
    conn = await asyncio.open_connection("127.0.0.1", site.port, local_addr=(source, 0))
    opened.append(conn)
    return conn


async def closed_after(conn: Conn, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes ``conn`` (at most ``limit``) and what it sent."""
    started = time.monotonic()
    async with asyncio.timeout(limit):
        data = await conn[0].read()
    return time.monotonic() - started, data


async def ask(conn: Conn) -> bytes:
    """Send one request on ``conn`` and read the whole answer."""
    conn[1].write(REQUEST)
    async with asyncio.timeout(10):
        return await conn[0].read()


async def test_idle_and_trickling_connections_are_closed_after_the_header_timeout(
    opened: list[Conn],
) -> None:
    """200 connections that send nothing and one that sends a header byte every 0.1 s are
    all closed by the server about 0.5 s after opening; a real request is still answered."""
    async with server(ConnectionLimits(header_timeout_s=0.5, per_client=0)) as site:
        idle = [await connect(opened, site) for _ in range(200)]
        trickler = await connect(opened, site)

        async def trickle() -> None:
            for byte in b"GET /hello HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 100:
                trickler[1].write(bytes([byte]))
                await asyncio.sleep(0.1)

        dripping = asyncio.create_task(trickle())
        results = await asyncio.gather(*(closed_after(c, 5) for c in [*idle, trickler]))
        dripping.cancel()
        assert all(data == b"" for _, data in results)
        assert max(seconds for seconds, _ in results) < 3
        assert (await ask(await connect(opened, site))).endswith(b"hello")


async def test_a_request_being_answered_outlives_the_header_timeout(
    opened: list[Conn],
) -> None:
    """A response that streams for 1.2 s with a 0.5 s header timeout arrives whole."""
    async with server(ConnectionLimits(header_timeout_s=0.5, per_client=0)) as site:
        conn = await connect(opened, site)
        conn[1].write(REQUEST.replace(b"/hello", b"/slow"))
        async with asyncio.timeout(10):
            answer = await conn[0].read()
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.count(b"tick") == 3


async def test_one_address_over_its_limit_is_refused_while_another_is_served(
    opened: list[Conn], log_events: Events
) -> None:
    """With 3 per client, 127.0.0.1's fourth connection gets a 503 and is closed; 127.0.0.2
    is served meanwhile; once one of the three closes, 127.0.0.1 is served again."""
    async with server(ConnectionLimits(header_timeout_s=30, per_client=3)) as site:
        held = [await connect(opened, site) for _ in range(3)]
        seconds, refusal = await closed_after(await connect(opened, site), 5)
        assert refusal.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"Too many connections from your address" in refusal
        assert seconds < 1
        assert (await ask(await connect(opened, site, "127.0.0.2"))).endswith(b"hello")
        assert site.counter.held("127.0.0.1") == 3
        await closed_after(await connect(opened, site), 5)  # refused again: logged once only

        held[0][1].close()
        await held[0][1].wait_closed()
        await asyncio.sleep(0.1)  # the server sees the close
        assert (await ask(await connect(opened, site))).endswith(b"hello")
    limited = [e for e in log_events if e["event"] == "client_connections_limited"]
    assert [(e["remote"], e["limit"], e["log_level"]) for e in limited] == [
        ("127.0.0.1", 3, "warning")
    ]


async def test_without_a_limit_one_address_may_hold_many_connections(
    opened: list[Conn],
) -> None:
    """per_client 0: 100 connections from one address are all served."""
    async with server(ConnectionLimits(header_timeout_s=30, per_client=0)) as site:
        conns = [await connect(opened, site) for _ in range(100)]
        answers = await asyncio.gather(*(ask(c) for c in conns))
        assert all(a.endswith(b"hello") for a in answers)
