"""A pass-through proxy in front of a real region: paces and counts what racks pull.

Every request (registration, the event stream, status reports, the stream)
goes to the region unchanged and its answer comes back unchanged, so the rack
talks to the real region protocol. Bodies under the stream prefix are sent
``piece`` bytes at a time, one piece every ``every_s`` seconds, and their
bytes are counted per stream path (:attr:`PacingProxy.served`), which is how a
trial tells that a rack fetched a file again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.rackproto import STREAM_PREFIX

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass
class PacingProxy:
    """Forwards everything to ``origin``; paces and counts the stream's bodies."""

    origin: str
    piece: int = 16 << 10
    every_s: float = 0.03
    served: dict[str, int] = field(default_factory=dict)  # stream path -> body bytes sent
    _server: TestServer | None = None
    _session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PacingProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.close()
        if self._session is not None:
            await self._session.close()

    @property
    def url(self) -> str:
        """The region URL to give racks."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.port}"

    def stream_bytes(self) -> int:
        """Stream body bytes sent so far, every path together."""
        return sum(self.served.values())

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        stream_path = request.path.removeprefix(STREAM_PREFIX + "/")
        paced = request.path.startswith(STREAM_PREFIX + "/")
        async with self._session.request(
            request.method,
            self.origin + request.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            resp = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP},
            )
            if upstream.content_length is not None:
                resp.content_length = upstream.content_length
            try:
                await resp.prepare(request)
                chunks = (
                    upstream.content.iter_chunked(self.piece)
                    if paced
                    else upstream.content.iter_any()
                )
                async for chunk in chunks:
                    await resp.write(chunk)
                    if paced:
                        self.served[stream_path] = self.served.get(stream_path, 0) + len(chunk)
                        await asyncio.sleep(self.every_s)
                await resp.write_eof()
            except (ConnectionError, aiohttp.ClientPayloadError):
                pass  # the rack went away (killed) or the region did
        return resp
