"""The rack's region client: auth, rotation, server-sent events, conditional index GETs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.errors import ConnectError, HTTPStatusError, UpstreamError
from common.rackproto import (
    EVENTS_PATH,
    REGISTER_PATH,
    STATUS_PATH,
    STREAM_INDEX,
    RackImage,
    RackStatus,
    Registration,
    status_from_json,
)
from rack.region_client import (
    EventStreamError,
    RegionClient,
    RegionEvent,
    RegistrationRefusedError,
)
from tests.fakes.daemons import free_port

SECRET = "sesame"
ServerFactory = Callable[..., Any]


class Region:
    """A tiny region: what it was sent, a document that fails twice first, one cut off once."""

    def __init__(self) -> None:
        self.statuses: list[RackStatus] = []
        self.failures_left = 2
        self.cuts_left = 1

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(REGISTER_PATH, self.register)
        app.router.add_get(EVENTS_PATH, self.events)
        app.router.add_post(STATUS_PATH, self.status)
        app.router.add_get(STREAM_INDEX, self.index)
        app.router.add_get("/MAAS/images-stream/streams/v1/flaky.sjson", self.flaky)
        app.router.add_get("/MAAS/images-stream/streams/v1/cut.sjson", self.cut)
        return app

    @staticmethod
    def authorized(request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {SECRET}"

    async def register(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request):
            return web.Response(status=401)  # as the region refuses a wrong shared secret
        body = await request.json()
        return web.json_response(
            {
                "system_id": body["system_id"] or "abc123",
                "region_keyring": "AAAA",
                "region_fingerprint": "F" * 40,
            }
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["system_id"] != "abc123":
            return web.Response(status=404)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(
            b': keepalive\n\nevent: snapshot\ndata: {"id": "s1"}\n\n'
            b"event: import\n\ndata: plain\ndata: text\n\n: keepalive\n\n"
        )
        return resp

    async def status(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request):
            return web.Response(status=401)
        self.statuses.append(status_from_json(await request.json()))
        return web.json_response({})

    async def index(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == '"e1"':
            return web.Response(status=304)
        return web.Response(
            body=b"signed index", headers={"ETag": '"e1"', "X-Bootsync-Snapshot": "snap1"}
        )

    async def flaky(self, request: web.Request) -> web.StreamResponse:
        if self.failures_left:
            self.failures_left -= 1
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.Response(body=b"products")

    async def cut(self, request: web.Request) -> web.StreamResponse:
        body = b"signed products " * 4096
        if not self.cuts_left:
            return web.Response(body=body)
        self.cuts_left -= 1
        resp = web.StreamResponse()
        resp.content_length = len(body)  # announced whole, then the connection ends
        resp.force_close()
        await resp.prepare(request)
        await resp.write(body[:1000])
        return resp


@pytest.fixture
async def region(aiohttp_server: ServerFactory) -> tuple[Region, TestServer]:
    """A started tiny region."""
    fake = Region()
    server: TestServer = await aiohttp_server(fake.app())
    return fake, server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for the test."""
    async with aiohttp.ClientSession() as s:
        yield s


def url_of(server: TestServer) -> str:
    """The base URL of ``server``."""
    return str(server.make_url("")).rstrip("/")


async def test_registration_goes_round_unreachable_urls_to_one_that_answers(
    region: tuple[Region, TestServer], session: aiohttp.ClientSession
) -> None:
    """A dead first URL is skipped, and later calls stay on the URL that worked."""
    dead = f"http://127.0.0.1:{free_port()}"
    client = RegionClient(session, [dead, url_of(region[1])], SECRET)
    reply = await client.register(Registration(hostname="r", url="http://r:5248"))
    assert reply.system_id == "abc123"
    assert client.base_url == url_of(region[1])


async def test_a_wrong_secret_and_an_unreachable_region_raise_distinct_errors(
    region: tuple[Region, TestServer], session: aiohttp.ClientSession
) -> None:
    """401 is a refused secret; nothing listening is a connect error after every URL."""
    wrong = RegionClient(session, [url_of(region[1])], "guess")
    with pytest.raises(RegistrationRefusedError, match="refused this rack's shared secret"):
        await wrong.register(Registration(hostname="r", url="http://r:5248"))
    dead = RegionClient(
        session, [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"], SECRET
    )
    with pytest.raises(ConnectError):
        await dead.get_index(None)


async def test_events_are_parsed_from_the_stream_and_keepalives_ignored(
    region: tuple[Region, TestServer], session: aiohttp.ClientSession
) -> None:
    """Each event carries its name and JSON data; plain data is kept as text."""
    client = RegionClient(session, [url_of(region[1])], SECRET)
    seen: list[RegionEvent] = []
    await client.listen("abc123", seen.append)
    assert seen == [
        RegionEvent("snapshot", {"id": "s1"}),
        RegionEvent("import", {}),
        RegionEvent("message", {"text": "plain\ntext"}),
    ]
    with pytest.raises(HTTPStatusError) as exc:
        await client.listen("unknown", seen.append)
    assert exc.value.status == 404


async def test_the_index_is_fetched_conditionally_and_documents_are_retried(
    region: tuple[Region, TestServer], session: aiohttp.ClientSession
) -> None:
    """A matching ETag gives None (304); a 503 is retried; headers come back."""
    client = RegionClient(session, [url_of(region[1])], SECRET)
    first = await client.get_index(None)
    assert first is not None
    assert (first.body, first.etag, first.snapshot) == (b"signed index", '"e1"', "snap1")
    assert await client.get_index('"e1"') is None
    document = await client.get_document("streams/v1/flaky.sjson")
    assert document.body == b"products"
    assert region[0].failures_left == 0


async def test_a_stream_document_cut_off_once_is_fetched_again_whole(
    region: tuple[Region, TestServer],
    session: aiohttp.ClientSession,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """A body that ends before its Content-Length is a truncated body, retried like the region's."""
    client = RegionClient(session, [url_of(region[1])], SECRET)
    document = await client.get_document("streams/v1/cut.sjson")
    assert document.body == b"signed products " * 4096
    assert document.url == url_of(region[1]) + "/MAAS/images-stream/streams/v1/cut.sjson"
    assert region[0].cuts_left == 0
    retries = [e for e in log_events if e["event"] == "stream_fetch_retrying"]
    assert len(retries) == 1
    assert "body ended early" in retries[0]["error"]


async def test_status_reports_reach_the_region_as_sent(
    region: tuple[Region, TestServer], session: aiohttp.ClientSession
) -> None:
    """A RackStatus posted is the RackStatus the region parses."""
    client = RegionClient(session, [url_of(region[1])], SECRET)
    status = RackStatus(
        state="synced",
        snapshot_id="snap1",
        last_sync="2025-07-18T00:00:00+00:00",
        images=[RackImage(name="ubuntu/noble", architecture="amd64", subarches=["ga-24.04"])],
    )
    await client.report("abc123", status)
    assert region[0].statuses == [status]


def flooding(first: bytes, piece: bytes) -> web.Application:
    """An events endpoint that sends ``first``, then ``piece`` again and again until the rack
    hangs up (at most 64 MiB)."""

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            await resp.write(first)
            for _ in range((64 << 20) // len(piece)):
                await resp.write(piece)
        except ConnectionResetError:
            pass
        return resp

    app = web.Application()
    app.router.add_get(EVENTS_PATH, events)
    return app


@pytest.mark.parametrize(
    ("first", "piece", "says"),
    [
        (b": connected\n\nevent: snapshot\ndata: ", b"x" * 65536, "an event line over"),
        (b"event: snapshot\n", b"data: " + b"y" * 1000 + b"\n", "an event over"),
    ],
)
async def test_an_endless_event_line_or_event_is_a_named_stream_error_not_a_crash(
    aiohttp_server: ServerFactory,
    session: aiohttp.ClientSession,
    first: bytes,
    piece: bytes,
    says: str,
) -> None:
    """A line with no end, or an event of endless data lines, stops reading at a bound and
    raises the rack's own stream error (an UpstreamError) naming the bound and the URL."""
    server: TestServer = await aiohttp_server(flooding(first, piece))
    client = RegionClient(session, [url_of(server)], SECRET)
    seen: list[RegionEvent] = []
    with pytest.raises(EventStreamError) as caught:
        await client.listen("abc123", seen.append)
    assert isinstance(caught.value, UpstreamError)
    assert says in str(caught.value)
    assert str(caught.value).startswith(url_of(server) + EVENTS_PATH.format(system_id="abc123"))
    assert seen == []
