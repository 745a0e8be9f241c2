"""The region link never fails silently: a registration that cannot succeed is said once, loudly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.rackproto import REGISTER_PATH
from rack import web as rack_web
from rack.identity import RackIdentity
from rack.link import RegionHealth, RegionLink
from rack.region_client import RegionClient
from rack.status import StatusBoard
from tests.fakes.waiting import eventually

ServerFactory = Callable[..., Any]
ClientFactory = Callable[..., Any]


class Attempts:
    """Counts the registrations a client session sends, whether or not they connect."""

    def __init__(self) -> None:
        self.count = 0
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_start.append(self._started)

    async def _started(
        self, _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: Any
    ) -> None:
        if params.url.path.endswith(REGISTER_PATH):
            self.count += 1


@pytest.fixture
async def attempts() -> AsyncIterator[tuple[Attempts, aiohttp.ClientSession]]:
    """A traced client session and its registration counter."""
    counter = Attempts()
    async with aiohttp.ClientSession(trace_configs=[counter.trace]) as session:
        yield counter, session


def answering(status: int, body: bytes, content_type: str) -> web.Application:
    """A web server that answers every registration with ``status`` and ``body``."""

    async def register(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_post(REGISTER_PATH, register)
    app.router.add_post("/MAAS" + REGISTER_PATH, register)
    return app


async def link_for(url: str, session: aiohttp.ClientSession, data_dir: Path) -> RegionLink:
    """A region link to ``url`` retrying every few milliseconds."""
    identity = RackIdentity(data_dir)
    await identity.load()
    return RegionLink(
        RegionClient(session, [url], "sesame"),
        identity,
        StatusBoard(data_dir),
        RegionHealth(),
        hostname="rack-1",
        rack_url="http://rack-1:5248",
        on_sync_request=lambda _reason: None,
        backoff_base=0.001,
        backoff_cap=0.01,
    )


def named(log: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    """The captured events called ``name``."""
    return [e for e in log if e["event"] == name]


@pytest.mark.parametrize(
    ("status", "body", "content_type", "says"),
    [
        (404, b"404: Not Found", "text/plain", "HTTP 404"),
        (400, b"Bad Request", "text/plain", "HTTP 400"),
        (200, b"<html>MAAS</html>", "text/html", "not a bootsync region"),
        (200, b'{"id": 1}', "application/json", "not a bootsync region"),
    ],
)
async def test_a_registration_the_region_cannot_answer_is_one_error_event_and_the_health_reason(  # noqa: PLR0917 - fixtures and the case
    aiohttp_server: ServerFactory,
    aiohttp_client: ClientFactory,
    attempts: tuple[Attempts, aiohttp.ClientSession],
    tmp_path: Path,
    log_events: list[MutableMapping[str, Any]],
    status: int,
    body: bytes,
    content_type: str,
    says: str,
) -> None:
    """404, 400 or a reply no bootsync region sends: logged once at error level while the link
    keeps retrying, and /healthz gives it as the reason no snapshot is served."""
    counter, session = attempts
    server: TestServer = await aiohttp_server(answering(status, body, content_type))
    url = str(server.make_url("")).rstrip("/")
    link = await link_for(url, session, tmp_path)
    task = asyncio.create_task(link.run())
    try:
        await eventually(lambda: counter.count >= 4, "four registration attempts")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    failed = named(log_events, "registration_failed")
    assert len(failed) == 1, failed
    assert failed[0]["log_level"] == "error"
    assert says in failed[0]["error"]
    assert failed[0]["url"] == url
    assert not named(log_events, "region_unreachable")
    assert link.problem is not None
    assert says in link.problem
    app = web.Application()
    app[rack_web.BOOT_RESOURCES] = tmp_path / "boot-resources"
    app[rack_web.PROBLEM_SOURCE] = link
    rack_web.add_routes(app)
    client = await aiohttp_client(app)
    resp = await client.get("/healthz")
    assert resp.status == 503
    reason = (await resp.json())["reason"]
    assert reason.startswith("no image snapshot synced yet: ")
    assert says in reason


async def test_tls_to_a_plain_http_region_is_one_error_event_not_an_outage(
    aiohttp_server: ServerFactory,
    attempts: tuple[Attempts, aiohttp.ClientSession],
    tmp_path: Path,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """An https:// URL for a region that speaks plain HTTP fails the handshake: that needs an
    operator, so it is an error said once and the link's problem, not "unreachable"."""
    counter, session = attempts
    server: TestServer = await aiohttp_server(answering(404, b"", "text/plain"))
    url = str(server.make_url("")).rstrip("/").replace("http://", "https://")
    link = await link_for(url, session, tmp_path)
    task = asyncio.create_task(link.run())
    try:
        await eventually(lambda: counter.count >= 4, "four registration attempts")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    failed = named(log_events, "registration_failed")
    assert len(failed) == 1, failed
    assert "TLS" in failed[0]["error"]
    assert not named(log_events, "region_unreachable")
    assert link.problem is not None
    assert "TLS" in link.problem


async def test_a_region_that_answers_again_clears_the_problem(
    aiohttp_server: ServerFactory,
    attempts: tuple[Attempts, aiohttp.ClientSession],
    tmp_path: Path,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """After a refused registration, an outage is reported as an outage (not the old 404)."""
    counter, session = attempts
    server: TestServer = await aiohttp_server(answering(404, b"", "text/plain"))
    url = str(server.make_url("")).rstrip("/")
    link = await link_for(url, session, tmp_path)
    task = asyncio.create_task(link.run())
    try:
        await eventually(lambda: counter.count >= 2, "two registration attempts")
        assert link.problem is not None
        assert "HTTP 404" in link.problem
        await server.close()
        await eventually(lambda: named(log_events, "region_unreachable"), "region_unreachable")
        assert link.problem == f"the region at {url} is unreachable"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
