"""A region that speaks the rack protocol (common/rackproto.py) on 127.0.0.1, for rack tests.

Registration, the event stream and status reports are implemented here; the
stream under ``/MAAS/images-stream/`` is proxied to a real region (a
``bootsync-regiond`` process) given as ``stream_origin``, so racks pull a real
published, signed stream. Every stream request is recorded with the status
answered, and faults can be switched on per path: a tampered body, a stalled
body, a flipped byte, a path served with another path's bytes; the event stream can send an endless line
(:meth:`flood_events`). :meth:`stop` and :meth:`start` take the region down and
bring it back on the same port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.rackproto import (
    AUTH_SCHEME,
    EVENTS_PATH,
    REGISTER_PATH,
    STATUS_PATH,
    STREAM_PREFIX,
    RackStatus,
    status_from_json,
)
from common.trust.keyrings import aload_keyring

_FORWARDED_REQUEST = ("If-None-Match", "Range", "If-Range")
_FORWARDED_REPLY = (
    "ETag",
    "Content-Range",
    "Last-Modified",
    "Content-Type",
    "X-Bootsync-Snapshot",
    "Accept-Ranges",
)
_PIECE = 64 << 10
_FLOOD_MAX = 256 << 20  # an endless line ends here if the rack never hangs up


@dataclass(frozen=True)
class StreamRequest:
    """One stream request as the fake saw it, and the status it answered."""

    path: str  # stream-relative
    headers: dict[str, str]
    status: int

    @property
    def range(self) -> str | None:
        """The Range header, if any."""
        return self.headers.get("Range")


@dataclass
class _Stall:
    after_bytes: int
    seconds: float
    times: int


@dataclass
class FakeRegion:
    """The rack side's counterpart; see the module docstring."""

    stream_origin: str
    secret: str = "rack-secret-for-tests"
    keyring: bytes | None = None  # offered at registration; default: the origin's key
    fingerprint: str = ""
    keepalive_s: float = 5.0
    port: int | None = None
    stream_requests: list[StreamRequest] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    statuses: list[tuple[str, RackStatus]] = field(default_factory=list)
    racks: dict[str, dict[str, Any]] = field(default_factory=dict)
    _tamper: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)
    _stall: dict[str, _Stall] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)
    _flip: dict[str, int] = field(default_factory=dict)
    _listeners: list[tuple[str, asyncio.Queue[tuple[str, str] | None]]] = field(
        default_factory=list
    )
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _floods: int = 0
    floods_sent: int = 0  # endless lines started; bytes the rack read are not counted
    hung_up_on_flood: int = 0  # endless lines the rack hung up on
    _server: TestServer | None = None
    _session: aiohttp.ClientSession | None = None
    _status_posted: asyncio.Event = field(default_factory=asyncio.Event)
    _unstall: asyncio.Event = field(default_factory=asyncio.Event)

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Listen (on the same port as before, after a :meth:`stop`)."""
        self._unstall.clear()
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        if self.keyring is None:
            async with self._session.get(
                f"{self.stream_origin}{STREAM_PREFIX}/region-keyring.gpg"
            ) as resp:
                assert resp.status == 200, "the origin region serves no keyring"
                self.keyring = await resp.read()
        if not self.fingerprint:
            self.fingerprint = (await aload_keyring(self.keyring)).fingerprints[0]
        app = web.Application()
        app.router.add_post(REGISTER_PATH, self._register)
        app.router.add_get(EVENTS_PATH, self._events)
        app.router.add_post(STATUS_PATH, self._status)
        app.router.add_get(STREAM_PREFIX + "/{path:.+}", self._stream)
        self._server = TestServer(app, host="127.0.0.1", port=self.port)
        await self._server.start_server()
        self.port = self._server.port

    async def stop(self) -> None:
        """Stop listening; open event streams end, stalled bodies resume."""
        self.release_stalls()
        for _, queue in self._listeners:
            queue.put_nowait(None)
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def close(self) -> None:
        """Stop, and release the client session to the origin."""
        await self.stop()
        if self._session is not None:
            await self._session.close()

    @property
    def url(self) -> str:
        """The region URL racks are configured with."""
        assert self.port is not None, "not started"
        return f"http://127.0.0.1:{self.port}"

    # --- test controls -------------------------------------------------------------

    def announce(self, event: str, data: str = "{}") -> int:
        """Send ``event`` to every connected rack; return how many were connected."""
        for _, queue in self._listeners:
            queue.put_nowait((event, data))
        return len(self._listeners)

    def tamper(self, path: str, change: Callable[[bytes], bytes]) -> None:
        """Serve ``change(body)`` at ``path`` (200, a new ETag, conditions ignored)."""
        self._tamper[path] = change

    def serve_as(self, path: str, origin_path: str) -> None:
        """Serve the origin's ``origin_path`` at ``path`` (for items a test adds to the stream)."""
        self._aliases[path] = origin_path

    def stall(self, path: str, *, after_bytes: int, seconds: float, times: int = 1) -> None:
        """Send ``after_bytes`` of ``path``'s body, then go silent for ``seconds``."""
        self._stall[path] = _Stall(after_bytes, seconds, times)

    def release_stalls(self) -> None:
        """End every stall now (the bodies go on)."""
        self._unstall.set()

    def flip_byte(self, path: str, offset: int) -> None:
        """Invert the byte at ``offset`` of ``path`` in every body that carries it."""
        self._flip[path] = offset

    def flood_events(self, times: int = 1) -> None:
        """The next ``times`` event streams send ``event: snapshot`` and a ``data:`` line that
        never ends (until the rack hangs up); later ones behave."""
        self._floods = times

    def clear_faults(self) -> None:
        """Serve everything faithfully again."""
        self._tamper.clear()
        self._stall.clear()
        self._flip.clear()

    def requests_for(self, path: str) -> list[StreamRequest]:
        """The recorded stream requests for ``path`` (stream-relative)."""
        return [r for r in self.stream_requests if r.path == path]

    async def wait_for_status(
        self, predicate: Callable[[RackStatus], bool], *, timeout: float = 20
    ) -> RackStatus:
        """Wait for a reported status that satisfies ``predicate``; return it."""
        async with asyncio.timeout(timeout):
            while True:
                for _, status in reversed(self.statuses):
                    if predicate(status):
                        return status
                self._status_posted.clear()
                await self._status_posted.wait()

    # --- the protocol ------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"{AUTH_SCHEME} {self.secret}"

    async def _register(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            self.refused += 1
            return web.json_response({"error": "wrong shared secret"}, status=401)
        body = await request.json()
        self.registrations.append(body)
        system_id = body.get("system_id") or f"rack-{next(self._ids)}"
        self.racks[system_id] = body
        assert self.keyring is not None
        return web.json_response(
            {
                "system_id": system_id,
                "region_fingerprint": self.fingerprint,
                "region_keyring": base64.b64encode(self.keyring).decode(),
            }
        )

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401)
        system_id = request.match_info["system_id"]
        if system_id not in self.racks:
            return web.Response(status=404)
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        entry = (system_id, queue)
        self._listeners.append(entry)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        try:
            await resp.prepare(request)
            await resp.write(b": connected\n\n")
            if self._floods > 0:
                self._floods -= 1
                await self._flood(resp)
                return resp
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), self.keepalive_s)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if item is None:
                    break
                await resp.write(f"event: {item[0]}\ndata: {item[1]}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._listeners.remove(entry)
        return resp

    async def _flood(self, resp: web.StreamResponse) -> None:
        self.floods_sent += 1
        await resp.write(b"event: snapshot\ndata: ")
        piece = b"x" * _PIECE
        try:
            for _ in range(_FLOOD_MAX // _PIECE):
                await resp.write(piece)
        except (ConnectionResetError, asyncio.CancelledError):  # aiohttp cancels on hang-up
            self.hung_up_on_flood += 1
            raise

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401)
        system_id = request.match_info["system_id"]
        if system_id not in self.racks:
            return web.Response(status=404)
        self.statuses.append((system_id, status_from_json(await request.json())))
        self._status_posted.set()
        return web.json_response({})

    # --- the stream, proxied to the real region --------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        tamper = self._tamper.get(path)
        headers = (
            {}
            if tamper
            else {k: request.headers[k] for k in _FORWARDED_REQUEST if k in request.headers}
        )
        assert self._session is not None
        origin_path = self._aliases.get(path, path)
        async with self._session.get(
            f"{self.stream_origin}{STREAM_PREFIX}/{origin_path}", headers=headers
        ) as origin:
            body = await origin.read()
            reply = {k: origin.headers[k] for k in _FORWARDED_REPLY if k in origin.headers}
            status = origin.status
        if tamper and status == 200:
            body = tamper(body)
            reply["ETag"] = '"tampered"'
        body = self._flipped(path, body, reply.get("Content-Range"))
        self.stream_requests.append(StreamRequest(path, dict(request.headers), status))
        resp = web.StreamResponse(status=status, headers=reply)
        if status == 304:
            await resp.prepare(request)
            return resp
        resp.content_length = len(body)
        await resp.prepare(request)
        stall = self._stall.get(path)
        sent = 0
        if stall is not None and stall.times > 0:
            stall.times -= 1
            await resp.write(body[: stall.after_bytes])
            sent = min(stall.after_bytes, len(body))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unstall.wait(), stall.seconds)
        try:
            for start in range(sent, len(body), _PIECE):
                await resp.write(body[start : start + _PIECE])
            await resp.write_eof()
        except ConnectionError:
            pass  # the rack went away (killed, in some tests)
        return resp

    def _flipped(self, path: str, body: bytes, content_range: str | None) -> bytes:
        offset = self._flip.get(path)
        if offset is None:
            return body
        first = int(content_range.split()[1].split("-")[0]) if content_range else 0
        if not first <= offset < first + len(body):
            return body
        changed = bytearray(body)
        changed[offset - first] ^= 0xFF
        return bytes(changed)
