"""A real region (region.app.build_app) for the rack tests, and a rack's side of the wire.

``start_region`` builds the daemon's own app on a short /tmp data directory,
starts it with ``aiohttp_client``, waits for its start-up import (no sources:
it publishes an empty stream), and makes an admin and a plain user key.
:class:`EventStream` reads a server-sent-events response the way a rack does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from common.rackproto import (
    AUTH_SCHEME,
    CREDENTIAL_HEADER,
    EVENTS_PATH,
    REGISTER_PATH,
    STATUS_PATH,
)
from region.api import rack_controllers, rack_protocol
from region.api.http import API_ROOT
from region.api.registry import add_routes
from region.app import build_app
from region.config import RegionConfig
from region.context import CTX, RegionContext
from region.db import users as repo_users
from region.db.users import ApiKey
from region.rackhub.hub import RackHub, open_rack_hub
from tests.fakes.waiting import eventually
from tests.integration.region.api_harness import oauth_header

WAIT_S = 10.0


async def _racks_wired_here(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]
    ctx.racks = await open_rack_hub(ctx.data_dir, ctx.publisher)
    yield
    ctx.racks.close()


async def build_region_app(config: RegionConfig) -> web.Application:
    """The daemon's app; racks are wired in here only if region/app.py does not do it yet."""
    app = await build_app(config)
    if not any(
        r.resource is not None and r.resource.canonical == REGISTER_PATH
        for r in app.router.routes()
    ):
        rack_protocol.add_routes(app)
        add_routes(app, rack_controllers.HANDLERS)
        app.cleanup_ctx.append(_racks_wired_here)
    return app


@dataclass
class RackRegion:
    """A started region: its client, context, rack hub, secret and two API keys.

    ``credentials`` holds each rack's own credential, as the region issued it to
    :meth:`register`.
    """

    client: TestClient[Any, Any]
    app: web.Application
    admin: ApiKey
    user: ApiKey
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def ctx(self) -> RegionContext:
        """The region's shared state."""
        return self.app[CTX]

    @property
    def hub(self) -> RackHub:
        """The region's rack hub."""
        assert self.ctx.racks is not None
        return self.ctx.racks

    def rack_auth(
        self, secret: str | None = None, *, system_id: str | None = None
    ) -> dict[str, str]:
        """The headers a rack sends (``secret`` None: the region's own), with the rack's own
        credential when ``system_id`` names a rack :meth:`register` registered."""
        headers = {"Authorization": f"{AUTH_SCHEME} {secret or self.hub.secret}"}
        if system_id is not None and system_id in self.credentials:
            headers[CREDENTIAL_HEADER] = self.credentials[system_id]
        return headers

    async def register(
        self,
        hostname: str = "rack1",
        *,
        system_id: str | None = None,
        url: str = "http://10.0.0.5:5248",
    ) -> dict[str, Any]:
        """Register a rack (with its credential, if it holds one); the reply body."""
        resp = await self.client.post(
            REGISTER_PATH,
            headers=self.rack_auth(system_id=system_id),
            json={"hostname": hostname, "url": url, "system_id": system_id},
        )
        assert resp.status == 200, await resp.text()
        reply: dict[str, Any] = await resp.json()
        if reply.get("credential"):
            self.credentials[reply["system_id"]] = reply["credential"]
        return reply

    async def report(self, system_id: str, **status: Any) -> aiohttp.ClientResponse:
        """POST a status report for ``system_id``."""
        return await self.client.post(
            STATUS_PATH.format(system_id=system_id),
            headers=self.rack_auth(system_id=system_id),
            json=status,
        )

    async def api(
        self, method: str, path: str, *, key: ApiKey | None = None, op: str | None = None
    ) -> aiohttp.ClientResponse:
        """A MAAS API call under API_ROOT, signed with ``key`` (default: the admin's)."""
        headers = {"Authorization": oauth_header(key or self.admin, realm=False)}
        params = {"op": op} if op else None
        return await self.client.request(method, API_ROOT + path, params=params, headers=headers)

    async def boot_images(self, system_id: str) -> dict[str, Any]:
        """``rack-controller list-boot-images``'s answer."""
        resp = await self.api("GET", f"/rackcontrollers/{system_id}/", op="list_boot_images")
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def start_region(data_dir: Path, aiohttp_client: AiohttpClient) -> RackRegion:
    """Start the region on ``data_dir`` and wait for its start-up import to publish."""
    app = await build_region_app(RegionConfig(data_dir=data_dir, create_default_source=False))
    client = await aiohttp_client(app)
    ctx = app[CTX]

    async def settled() -> bool:
        return await ctx.publisher.current_id() is not None and not ctx.importer.is_importing()

    await eventually(settled, "the start-up import")
    if await repo_users.get_user(ctx.db, "admin") is None:
        await repo_users.create_user(ctx.db, "admin", is_admin=True)
        await repo_users.create_user(ctx.db, "alice", is_admin=False)
    keys = []
    for name in ("admin", "alice"):
        user = await repo_users.get_user(ctx.db, name)
        assert user is not None
        keys.append(ApiKey(*await repo_users.create_token(ctx.db, user.id)))
    return RackRegion(client=client, app=app, admin=keys[0], user=keys[1])


class EventStream:
    """A rack's open event stream: read events, skipping keepalive comments."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.comments: list[str] = []

    async def next_event(self) -> tuple[str, dict[str, Any]]:
        """The next (event, data); fails after WAIT_S or if the stream ends."""
        name, data = "message", ""
        async with asyncio.timeout(WAIT_S):
            while True:
                raw = await self.resp.content.readline()
                assert raw, "the event stream ended"
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    self.comments.append(line)
                elif line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = line.removeprefix("data: ")
                elif line == "" and data:
                    return name, json.loads(data)

    async def wait_connected(self) -> None:
        """Read the region's first comment: the rack is now connected at the region."""
        async with asyncio.timeout(WAIT_S):
            assert await self.resp.content.readline() == b": connected\n"
            assert await self.resp.content.readline() == b"\n"

    async def read_to_end(self) -> bytes:
        """Everything left until the region ends the stream."""
        async with asyncio.timeout(WAIT_S):
            return await self.resp.content.read()


async def open_events(
    session: aiohttp.ClientSession | TestClient[Any, Any], url: str, headers: dict[str, str]
) -> EventStream:
    """GET an event stream (``url`` absolute for a session, a path for the TestClient)."""
    resp = await session.get(url, headers=headers)
    assert resp.status == 200, await resp.text()
    stream = EventStream(resp)
    await stream.wait_connected()
    return stream


def events_path(system_id: str) -> str:
    """The rack's event-stream path."""
    return EVENTS_PATH.format(system_id=system_id)
