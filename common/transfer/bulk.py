"""Plain-HTTP bulk GETs: a blocking socket in a dedicated thread, off the event loop.

aiohttp hands every byte of a download to the event-loop thread, the measured
bottleneck of large files (bench/RESULTS.md, mirror). The Range parts of a
split download (common/transfer/ranged.py) take this path: measured 1.5× faster
with 20% less CPU for a 1 GiB file; whole-file GETs did not gain clearly and stay
on aiohttp. For a GET this module can do alone (``http://``, no proxy, no credentials in the URL) :func:`open_bulk`
connects, sends a minimal HTTP/1.1 request and reads the response head; then
:meth:`BulkResponse.pour` receives the body into one reused buffer
(``recv_into``) and hands it to a sink that writes it (``pwrite``), all in one
thread; each syscall and hashlib on a large buffer release the GIL.

An answer this module does not handle (a redirect, a 1xx, a chunked or unsized
body) raises :class:`Unsupported` before any byte of the body is taken: the
caller then takes the aiohttp path. The connect and stall timeouts are socket
timeouts; the bytes received are reported on the event loop (for the caller's
:class:`common.transfer.limits.Pace` and progress) at least every 0.1 s;
cancelling shuts the socket down, so the thread stops at once. Network failures
raise the :mod:`common.errors` types :func:`common.transfer.http.translate_error`
gives the aiohttp path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import mmap
import os
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from common.errors import ConnectError, StallError, TruncatedBodyError, UpstreamError

__all__ = ["BULK_BUFSIZE", "BulkResponse", "Unsupported", "bulk_usable", "open_bulk"]

BULK_BUFSIZE = 256 << 10  # one receive buffer per request
_HEAD_MAX = 64 << 10
_REPORT_BYTES = 1 << 20
_REPORT_S = 0.1
_CONNECT_SLICE_S = 0.25  # a connect in progress checks for cancellation this often
# Off: the aiohttp path only (kept for the A/B benchmark and as an escape hatch).
ENV_SWITCH = "BOOTSYNC_BULK_HTTP"

T = TypeVar("T")
# aiohttp applies ~/.netrc credentials under trust_env: such a session stays on aiohttp.
# Looked up once, at import (a stat on the event loop would block it).
_NETRC = Path(os.environ.get("NETRC") or "~/.netrc").expanduser().exists()


class Unsupported(Exception):
    """This request or answer is not one for the bulk path: use aiohttp."""


class _Aborted(Exception):
    """The transfer was cancelled from the event loop."""


def bulk_usable(session: aiohttp.ClientSession, url: str) -> bool:
    """True if a GET of ``url`` through ``session`` may take the bulk path.

    Plain ``http://`` only, without credentials in the URL, and only where the
    session would not use a proxy (its own, or the environment's) or ~/.netrc.
    """
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return False
    parsed = URL(url)
    if parsed.scheme != "http" or not parsed.host or parsed.user or parsed.password:
        return False
    if getattr(session, "_default_proxy", None) is not None:
        return False
    if session.trust_env:
        proxies = urllib.request.getproxies()
        if ("http" in proxies or "all" in proxies) and not urllib.request.proxy_bypass(parsed.host):
            return False
        if _NETRC:
            return False
    return True


class BulkResponse:
    """One response on its own socket; use as ``async with``, read the body once."""

    def __init__(
        self, sock: socket.socket, status: int, headers: dict[str, str], rest: bytes, *, url: str
    ) -> None:
        self.url = url
        self.status = status
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self._sock = sock
        self._rest = rest
        self._aborted = False

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None else None

    async def pour(
        self,
        length: int,
        sink: Callable[[memoryview], int],
        count: Callable[[int], None],
    ) -> int:
        """Receive up to ``length`` body bytes into ``sink`` in a thread; the bytes it took.

        ``sink(view)`` runs in the thread and returns how many bytes of ``view``
        it took: fewer ends the transfer. ``count(n)`` is called on the event
        loop as bytes arrive. Raises TruncatedBodyError if the connection
        closes first, StallError when nothing arrives within the stall
        timeout; what ``sink`` raises is raised as it is.
        """
        loop = asyncio.get_running_loop()
        return await _in_thread(lambda: self._pour(loop, length, sink, count), self._abort)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    async def __aenter__(self) -> BulkResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _abort(self) -> None:
        self._aborted = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv

    def _pour(
        self,
        loop: asyncio.AbstractEventLoop,
        length: int,
        sink: Callable[[memoryview], int],
        count: Callable[[int], None],
    ) -> int:
        taken = pending = 0
        reported = time.monotonic()
        # mmap-backed: unmapped once this returns; a malloc'ed buffer freed in this
        # short-lived thread could stay in a glibc arena (bench/RESULTS.md, Memory).
        buffer = mmap.mmap(-1, BULK_BUFSIZE)
        try:
            with memoryview(buffer) as view:
                rest, self._rest = self._rest, b""
                while taken < length:
                    if rest:
                        chunk = memoryview(rest)[: length - taken]
                        got, rest = len(chunk), b""
                    else:
                        got = self._recv(view[: min(len(view), length - taken)], taken)
                        chunk = view[:got]
                    took = sink(chunk)
                    taken += took
                    pending += took
                    now = time.monotonic()
                    if pending >= _REPORT_BYTES or now - reported >= _REPORT_S:
                        loop.call_soon_threadsafe(count, pending)
                        pending, reported = 0, now
                    if took < got:
                        break
        finally:
            if pending:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(count, pending)
        return taken

    def _recv(self, into: memoryview, taken: int) -> int:
        try:
            got = self._sock.recv_into(into)
        except TimeoutError as exc:
            raise StallError("no bytes received within the stall timeout", url=self.url) from exc
        except OSError as exc:
            if self._aborted:
                raise _Aborted from exc
            kind = TruncatedBodyError if taken else ConnectError
            raise kind(f"connection lost: {exc!r}", url=self.url) from exc
        if self._aborted:
            raise _Aborted
        if got == 0:
            raise TruncatedBodyError("body ended early", url=self.url)
        return got


async def open_bulk(
    url: str,
    headers: Mapping[str, str],
    *,
    limits: aiohttp.ClientTimeout,
) -> BulkResponse:
    """Send a GET for ``url`` and read the answer's head, in a thread.

    Raises Unsupported for an answer the bulk path leaves to aiohttp (1xx,
    3xx, a body without Content-Length or with Transfer-Encoding), ConnectError
    when the server cannot be reached, StallError when the head does not come
    within the stall timeout, UpstreamError for a malformed answer.
    """
    parsed = URL(url)
    host, port = parsed.raw_host or "", parsed.port or 80
    lines = [f"GET {parsed.raw_path_qs or '/'} HTTP/1.1", f"Host: {parsed.raw_authority}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Connection: close", "", ""]
    request = "\r\n".join(lines).encode("latin-1")
    state: dict[str, socket.socket] = {}
    aborted = threading.Event()

    def abort() -> None:
        aborted.set()
        sock = state.get("sock")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run() -> BulkResponse:
        sock = _connect(host, port, limits.sock_connect, aborted, state)
        try:
            sock.settimeout(limits.sock_read)
            sock.sendall(request)
            status, fields, rest = _read_head(sock, aborted)
        except TimeoutError as exc:
            sock.close()
            raise StallError("no bytes received within the stall timeout", url=url) from exc
        except OSError as exc:
            sock.close()
            if aborted.is_set():
                raise _Aborted from exc
            raise ConnectError(f"connection lost: {exc!r}", url=url) from exc
        except BaseException:
            sock.close()
            raise
        if status < 200 or 300 <= status < 400:
            sock.close()
            raise Unsupported(f"HTTP {status}")
        if status in (200, 206) and (
            "transfer-encoding" in fields or "content-length" not in fields
        ):
            sock.close()
            raise Unsupported("no Content-Length")
        return BulkResponse(sock, status, fields, rest, url=url)

    try:
        return await _in_thread(run, abort, BulkResponse.close)
    except (ConnectError, UpstreamError) as exc:
        if not exc.url:
            raise type(exc)(str(exc), url=url) from exc.__cause__
        raise


def _connect(
    host: str,
    port: int,
    connect_timeout: float | None,
    aborted: threading.Event,
    state: dict[str, socket.socket],
) -> socket.socket:
    """A connected blocking socket; checks ``aborted`` while connecting."""
    deadline = None if connect_timeout is None else time.monotonic() + connect_timeout
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectError(f"cannot connect: {exc!r}") from exc
    failure: BaseException | None = None
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        state["sock"] = sock
        try:
            _connect_one(sock, address, deadline, aborted)
        except (ConnectError, OSError) as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if isinstance(failure, ConnectError):
        raise failure
    raise ConnectError(f"cannot connect: {failure!r}") from failure


def _connect_one(
    sock: socket.socket, address: object, deadline: float | None, aborted: threading.Event
) -> None:
    sock.setblocking(False)
    code = sock.connect_ex(address)  # type: ignore[arg-type]
    while code in (errno.EINPROGRESS, errno.EAGAIN):
        if aborted.is_set():
            raise _Aborted
        left = _CONNECT_SLICE_S if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise ConnectError("connect timed out")
        _, writable, _ = select.select([], [sock], [], min(left, _CONNECT_SLICE_S))
        if writable:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise ConnectError(f"cannot connect: {os.strerror(code)}")
    sock.setblocking(True)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _read_head(sock: socket.socket, aborted: threading.Event) -> tuple[int, dict[str, str], bytes]:
    """The status, lower-cased header fields and any body bytes read with the head."""
    received = bytearray()
    while (end := received.find(b"\r\n\r\n")) < 0:
        if len(received) > _HEAD_MAX:
            raise UpstreamError("request failed: response head too large")
        chunk = sock.recv(16 << 10)
        if aborted.is_set():
            raise _Aborted
        if not chunk:
            raise ConnectionResetError("connection closed before the response head")
        received += chunk
    head = bytes(received[:end]).decode("latin-1").split("\r\n")
    rest = bytes(received[end + 4 :])
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise UpstreamError(f"request failed: bad status line {head[0][:80]!r}")
    fields: dict[str, str] = {}
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise UpstreamError(f"request failed: bad header line {line[:80]!r}")
        key = name.strip().lower()
        if key in fields and key == "content-length" and fields[key] != value.strip():
            raise Unsupported("conflicting Content-Length")
        fields[key] = value.strip()
    length = fields.get("content-length")
    if length is not None and not length.isdigit():
        raise Unsupported("bad Content-Length")
    return int(parts[1]), fields, rest


async def _in_thread(
    func: Callable[[], T],
    abort: Callable[[], None],
    discard: Callable[[T], None] | None = None,
) -> T:
    """Run ``func`` on a thread of its own (a transfer holds it for long: not the executor's).

    Cancelling calls ``abort`` and waits for ``func`` to end before re-raising;
    a result it returned all the same goes to ``discard``.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = func()
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, None, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="bootsync-bulk", daemon=True).start()
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        abort()
        with contextlib.suppress(BaseException):
            late = await asyncio.shield(future)
            if discard is not None:
                discard(late)
        raise
