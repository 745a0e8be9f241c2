"""A real HTTP upstream on 127.0.0.1 that records requests and misbehaves on demand.

Files come from ``add_file`` (path -> bytes) or from a directory given with
``serve_directory``. Range requests are served properly unless a fault says
otherwise. Faults are set per path and most wear off after ``times`` requests.
Byte counts in ``truncate``, ``stall`` and ``reset`` are counted within one
response body, so a resumed request is cut at the same distance from its start.
``drip`` is the slow-retrieval attack: a few bytes at a time, never a stall.
``endless`` sends the file and then filler for as long as the client reads.
Every body byte sent is counted per path (:meth:`FakeUpstream.served_bytes`), and
with the status line and headers in :meth:`FakeUpstream.transferred_bytes`.
Every file is served with an ETag (of its bytes) and a Last-Modified (when it was
added, or its mtime), and a conditional GET that matches them gets ``304 Not
Modified`` without a body, unless a fault would change the body it answers with
(``validators=False`` switches all of that off).

Use the ``fake_upstream`` fixture, or ``async with FakeUpstream() as upstream``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from types import TracebackType

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_PIECE = 64 << 10
_ENDLESS_MAX = 1 << 30  # an endless body ends here if the client never hangs up


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]

    @property
    def range(self) -> str | None:
        """The Range header, if any."""
        return self.headers.get("Range")


@dataclass
class _Fault:
    times: int | None  # None: forever
    value: int = 0
    extra: float = 0.0
    target: str = ""

    def take(self) -> bool:
        """Consume one use; False once the fault has worn off."""
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


@dataclass
class _PathFaults:
    fail: _Fault | None = None
    truncate: _Fault | None = None
    flip: _Fault | None = None
    stall: _Fault | None = None
    reset: _Fault | None = None
    wrong_length: _Fault | None = None
    redirect: _Fault | None = None
    ignore_range: _Fault | None = None
    drip: _Fault | None = None
    endless: _Fault | None = None

    def alter_body(self) -> bool:
        """True while a fault would change the next body: such a request never gets a 304."""
        return any(
            fault is not None and (fault.times is None or fault.times > 0)
            for fault in (
                self.truncate,
                self.flip,
                self.stall,
                self.reset,
                self.wrong_length,
                self.ignore_range,
                self.drip,
                self.endless,
            )
        )


@dataclass
class FakeUpstream:
    """An aiohttp app serving files, recording requests, with fault switches."""

    files: dict[str, bytes] = field(default_factory=dict)
    root: Path | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)  # path -> body bytes sent
    header_bytes: dict[str, int] = field(default_factory=dict)  # path -> status line + headers
    validators: bool = True  # ETag / Last-Modified on every file, 304 to a matching request
    _added_at: dict[str, float] = field(default_factory=dict)
    _faults: dict[str, _PathFaults] = field(default_factory=dict)
    _server: TestServer | None = None

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            await self._server.close()

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- content ---------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this server."""
        assert self._server is not None, "server not started"
        return str(self._server.make_url(_norm(path)))

    def add_file(self, path: str, data: bytes) -> None:
        """Serve ``data`` at ``path`` (its Last-Modified: now, whole seconds)."""
        self.files[_norm(path)] = data
        self._added_at[_norm(path)] = float(int(time.time()))

    def serve_directory(self, root: Path) -> None:
        """Serve files under ``root`` for paths not added with ``add_file``."""
        self.root = root

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The recorded requests for ``path``."""
        return [r for r in self.requests if r.path == _norm(path)]

    def served_bytes(self, path: str | None = None) -> int:
        """Body bytes sent so far for ``path`` (None: for every path together)."""
        if path is None:
            return sum(self.served.values())
        return self.served.get(_norm(path), 0)

    def transferred_bytes(self) -> int:
        """Every byte sent so far: bodies, status lines and headers (as HTTP/1.1 frames them)."""
        return self.served_bytes() + sum(self.header_bytes.values())

    # --- fault switches ----------------------------------------------------------

    def fail(
        self, path: str, status: int = 503, times: int = 2, retry_after: float | None = None
    ) -> None:
        """Answer ``status`` to the next ``times`` requests, then serve normally."""
        self._for(path).fail = _Fault(times, status, -1.0 if retry_after is None else retry_after)

    def truncate(self, path: str, at_bytes: int, times: int = 1) -> None:
        """Announce the full length but close the connection after ``at_bytes`` bytes."""
        self._for(path).truncate = _Fault(times, at_bytes)

    def flip_byte(self, path: str, offset: int, times: int = 1) -> None:
        """Invert the byte at file ``offset`` in the next ``times`` bodies that carry it."""
        self._for(path).flip = _Fault(times, offset)

    def stall(self, path: str, after_bytes: int, seconds: float, times: int = 1) -> None:
        """Send ``after_bytes`` bytes, go silent for ``seconds``, then send the rest."""
        self._for(path).stall = _Fault(times, after_bytes, seconds)

    def reset(self, path: str, after_bytes: int, times: int = 1) -> None:
        """Send ``after_bytes`` bytes, then abort the TCP connection (RST)."""
        self._for(path).reset = _Fault(times, after_bytes)

    def wrong_length(self, path: str, announced: int | None, times: int | None = None) -> None:
        """Announce ``announced`` as Content-Length whatever the body is (None: omit it)."""
        self._for(path).wrong_length = _Fault(times, -1 if announced is None else announced)

    def redirect(self, path: str, to_path: str, times: int | None = None) -> None:
        """Answer 302 with a Location pointing at ``to_path``."""
        self._for(path).redirect = _Fault(times, target=_norm(to_path))

    def drip(
        self, path: str, nbytes: int = 1, every_s: float = 1.0, times: int | None = None
    ) -> None:
        """Send the body ``nbytes`` at a time, one piece every ``every_s`` seconds."""
        self._for(path).drip = _Fault(times, nbytes, every_s)

    def endless(self, path: str, times: int | None = None) -> None:
        """Send the body without a length, then filler for ever (until the client hangs up)."""
        self._for(path).endless = _Fault(times)

    def ignore_range(self, path: str, times: int | None = None) -> None:
        """Answer 200 with the whole file even when a Range is asked for."""
        self._for(path).ignore_range = _Fault(times)

    def _for(self, path: str) -> _PathFaults:
        return self._faults.setdefault(_norm(path), _PathFaults())

    # --- serving -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests.append(RecordedRequest(request.method, path, dict(request.headers)))
        faults = self._faults.get(path, _PathFaults())
        if faults.redirect is not None and faults.redirect.take():
            raise web.HTTPFound(faults.redirect.target)
        if faults.fail is not None and faults.fail.take():
            headers = {} if faults.fail.extra < 0 else {"Retry-After": f"{faults.fail.extra:g}"}
            return web.Response(status=faults.fail.value, headers=headers)
        data = await self._content(path)
        if data is None:
            return web.Response(status=404)
        validators = await self._validators(path, data) if self.validators else {}
        if validators and not faults.alter_body() and _not_modified(request, validators):
            resp = web.Response(status=304, headers=validators)
            self._count_headers(path, resp)
            return resp
        start, end, status = 0, len(data), 200
        wanted = request.headers.get("Range")
        ignore = faults.ignore_range is not None and faults.ignore_range.take()
        if wanted is not None and not ignore:
            parsed = _parse_range(wanted, len(data))
            if parsed is None:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            start, end, status = parsed[0], parsed[1], 206
        body = bytearray(data[start:end])
        if faults.flip is not None and start <= faults.flip.value < end and faults.flip.take():
            body[faults.flip.value - start] ^= 0xFF
        return await self._send(
            request, faults, bytes(body), status, (start, end, len(data)), validators=validators
        )

    async def _validators(self, path: str, data: bytes) -> dict[str, str]:
        modified = self._added_at.get(path)
        if modified is None and self.root is not None:
            candidate = self.root / path.lstrip("/")
            modified = (await asyncio.to_thread(candidate.stat)).st_mtime
        return {
            "ETag": f'"{hashlib.sha256(data).hexdigest()[:32]}"',
            "Last-Modified": formatdate(int(modified or 0), usegmt=True),
        }

    async def _content(self, path: str) -> bytes | None:
        if path in self.files:
            return self.files[path]
        if self.root is None:
            return None
        candidate = (self.root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(self.root.resolve()):
            return None
        try:
            return await asyncio.to_thread(candidate.read_bytes)
        except (FileNotFoundError, IsADirectoryError):
            return None

    async def _send(
        self,
        request: web.Request,
        faults: _PathFaults,
        body: bytes,
        status: int,
        span: tuple[int, int, int],
        *,
        validators: dict[str, str],
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=status, headers=validators)
        resp.headers["Accept-Ranges"] = "bytes"
        if status == 206:
            resp.headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{span[2]}"
        lying = faults.wrong_length is not None and faults.wrong_length.take()
        endless = faults.endless is not None and faults.endless.take()
        if endless:
            resp.enable_chunked_encoding()
        elif not lying:
            resp.content_length = len(body)
        elif faults.wrong_length is not None and faults.wrong_length.value >= 0:
            resp.content_length = faults.wrong_length.value
        else:
            resp.enable_chunked_encoding()
        cut = len(body)
        truncate = faults.truncate is not None and faults.truncate.take()
        reset = faults.reset is not None and faults.reset.take()
        stall = faults.stall is not None and faults.stall.take()
        drip = faults.drip if faults.drip is not None and faults.drip.take() else None
        if truncate and faults.truncate:
            cut = min(cut, faults.truncate.value)
        if reset and faults.reset:
            cut = min(cut, faults.reset.value)
        if truncate or lying:
            resp.force_close()
        await resp.prepare(request)
        self._count_headers(request.path, resp)
        if request.method == "HEAD":
            return resp
        stall_at = faults.stall.value if stall and faults.stall else -1
        sent = 0
        while True:
            if sent == stall_at and faults.stall:
                await asyncio.sleep(faults.stall.extra)
            if sent >= cut:
                break
            piece_end = min(cut, sent + (drip.value if drip else _PIECE))
            if sent < stall_at < piece_end:
                piece_end = stall_at
            await resp.write(body[sent:piece_end])
            self._count(request.path, piece_end - sent)
            sent = piece_end
            if drip is not None:
                await asyncio.sleep(drip.extra)
        if endless:
            await self._filler(request, resp)
        if reset:
            _abort(request)
        return resp

    def _count(self, path: str, nbytes: int) -> None:
        self.served[path] = self.served.get(path, 0) + nbytes

    def _count_headers(self, path: str, resp: web.StreamResponse) -> None:
        # "HTTP/1.1 200 OK\r\n", "Name: value\r\n" each, the blank line; aiohttp adds
        # Date and Server, counted here too.
        size = len(f"HTTP/1.1 {resp.status} {resp.reason}\r\n") + 2
        size += sum(len(k) + len(v) + 4 for k, v in resp.headers.items())
        size += len("Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n") + len("Server: Python/3 aiohttp\r\n")
        self.header_bytes[path] = self.header_bytes.get(path, 0) + size

    async def _filler(self, request: web.Request, resp: web.StreamResponse) -> None:
        """Zeros after the body until the client hangs up (or _ENDLESS_MAX bytes)."""
        piece = bytes(_PIECE)
        try:
            for _ in range(_ENDLESS_MAX // _PIECE):
                await resp.write(piece)
                self._count(request.path, _PIECE)
        except ConnectionError:  # the client stopped reading: what it should do
            return


def _not_modified(request: web.Request, validators: dict[str, str]) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if request.method not in ("GET", "HEAD"):
        return False
    tags = request.headers.get("If-None-Match")
    if tags is not None:
        wanted = {t.strip().removeprefix("W/") for t in tags.split(",")}
        return "*" in wanted or validators["ETag"] in wanted
    since = request.headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        return parsedate_to_datetime(validators["Last-Modified"]) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


def _abort(request: web.Request) -> None:
    """Close the connection with a TCP reset instead of a clean FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _parse_range(value: str, length: int) -> tuple[int, int, int] | None:
    """(start, end exclusive, 206) for a single ``bytes=`` range, None if unsatisfiable."""
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last = match[1], match[2]
    if first:
        start = int(first)
        end = min(int(last) + 1, length) if last else length
    elif last:
        start, end = max(0, length - int(last)), length
    else:
        return None
    if start >= length or end <= start:
        return None
    return start, end, 206


def _norm(path: str) -> str:
    return "/" + path.lstrip("/")


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    """A started FakeUpstream on 127.0.0.1, closed after the test."""
    async with FakeUpstream() as upstream:
        yield upstream
