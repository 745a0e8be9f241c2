"""Serving files with the kernel's sendfile on any event loop, uvloop included.

aiohttp's FileResponse sends a body with ``loop.sendfile``. uvloop has no
``loop.sendfile``, so under uvloop FileResponse falls back to reading the file
in a worker thread and writing the bytes through the transport (two copies in
user space). :class:`SendfileResponse` keeps every HTTP decision of FileResponse
(Range, If-Range, 206/416, ETag, If-None-Match/If-Modified-Since → 304, 412,
HEAD, content type) and replaces only the transfer of the body:

* ``os.sendfile`` runs in a small dedicated thread pool, so a page-cache miss
  never blocks the loop (the stdlib's ``loop.sendfile`` reads on the loop);
* the socket stays non-blocking: a worker sends until the socket buffer is full
  and returns, and the loop waits for writability, so a slow client holds no
  thread;
* it writes to a duplicate of the connection's descriptor (and reads a
  duplicate of the file's), so a transport or file closed mid-transfer can never
  make a worker write to a reused descriptor number.

Wiring: use ``SendfileResponse`` wherever ``web.FileResponse`` is used; it takes
the same arguments. TLS transports, compressed responses and bodies under
MIN_SENDFILE_BYTES take FileResponse's own path. It overrides
``FileResponse._sendfile``, aiohttp 3.x's hook between the header logic and the
body; a unit test fails if that hook changes. Numbers: bench/serve_bench.py and
its section of bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from aiohttp import web_fileresponse
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_fileresponse import FileResponse
from aiohttp.web_request import BaseRequest

from common.ops.logging import get_logger

log = get_logger("fileserve")

# One worker call sends at most this much, so a fast client cannot hold a thread
# for a whole image while others wait for a worker.
MAX_BYTES_PER_CALL = 16 << 20
# Workers only run while the kernel is copying or a page is being read from
# disk; a slow client waits on the loop, not in a worker. On warm files 1, 2, 8
# and 16 threads measured alike; more threads let more cold reads wait at once.
SENDFILE_THREADS = min(32, 4 * (os.cpu_count() or 1))
# Smaller bodies take FileResponse's own path: one worker hop for a few pages costs
# more than it saves (index and products documents, keyrings).
MIN_SENDFILE_BYTES = 1 << 20

_pool: ThreadPoolExecutor | None = None


def sendfile_pool() -> ThreadPoolExecutor:
    """The process-wide pool the sendfile workers run in (created on first use)."""
    global _pool  # noqa: PLW0603 - one pool per process, like the default executor
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=SENDFILE_THREADS, thread_name_prefix="sendfile")
    return _pool


class SendfileResponse(FileResponse):
    """A FileResponse whose body goes out with ``os.sendfile`` on every event loop.

    Same constructor and same status, headers and body as ``web.FileResponse``.
    A client that goes away mid-body raises ``ConnectionError`` (aiohttp then
    closes the connection quietly); a file that shrinks while it is being sent
    raises ``ConnectionAbortedError`` after a ``file_shrank_while_sending`` event,
    so the client sees a short body and a closed connection, never a desync.
    """

    async def _sendfile(
        self, request: BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        transport = request.transport
        if (
            transport is None
            or transport.is_closing()
            or count < MIN_SENDFILE_BYTES
            or self.compression
            or web_fileresponse.NOSENDFILE
            or transport.get_extra_info("sslcontext") is not None
            or transport.get_extra_info("socket") is None
        ):
            return await super()._sendfile(request, fobj, offset, count)
        # StreamResponse.prepare sends the status line and headers right away.
        writer = await super(FileResponse, self).prepare(request)
        if writer is None:
            raise ConnectionResetError("connection lost before the body")
        await wait_flushed(transport, writer)
        resume_reading = transport.is_reading()
        transport.pause_reading()  # as loop.sendfile does: nothing else touches the socket
        try:
            sent = await send_fd(
                transport.get_extra_info("socket").fileno(), fobj.fileno(), offset, count
            )
        finally:
            if resume_reading and not transport.is_closing():
                transport.resume_reading()
        if sent < count:
            log.warning(
                "file_shrank_while_sending", path=str(self._path), bytes=sent, expected=count
            )
            raise ConnectionAbortedError(f"{self._path}: file ended {count - sent} bytes early")
        await super().write_eof()
        return writer


async def wait_flushed(transport: asyncio.Transport, writer: AbstractStreamWriter) -> None:
    """Wait until every byte written to ``transport`` so far has reached the socket.

    ``writer`` is the aiohttp writer on that transport; its drain() waits while the
    protocol is paused. The transport's buffer limits are restored afterwards.
    Raises what drain() raises when the connection is lost.
    """
    if transport.get_write_buffer_size() == 0:
        return
    low, high = transport.get_write_buffer_limits()
    # With a zero high-water mark the protocol stays paused until the buffer is
    # empty, and drain() waits for exactly that.
    transport.set_write_buffer_limits(high=0, low=0)
    try:
        await writer.drain()
    finally:
        transport.set_write_buffer_limits(high=high, low=low)


async def send_fd(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    """Send ``count`` bytes of ``file_fd`` from ``offset`` to the non-blocking socket ``sock_fd``.

    Returns the bytes sent: ``count``, or fewer if the file ended first. Raises
    ``ConnectionError`` (or another ``OSError``) from ``os.sendfile``. The
    caller's descriptors may be closed as soon as this returns or is cancelled.
    """
    loop = asyncio.get_running_loop()
    sock_dup, file_dup = os.dup(sock_fd), os.dup(file_fd)
    call: asyncio.Future[tuple[int, bool]] | None = None
    sent = 0
    try:
        while sent < count:
            call = loop.run_in_executor(
                sendfile_pool(), _send_until_full, sock_dup, file_dup, offset + sent, count - sent
            )
            # Shielded: cancelling us must not orphan a worker that still uses the dups.
            step, socket_full = await asyncio.shield(call)
            call = None
            sent += step
            if socket_full:
                await _writable(loop, sock_dup)
            elif step == 0:
                break  # end of file
    finally:
        if call is not None and not call.done():
            call.add_done_callback(lambda done: _close_after(done, sock_dup, file_dup))
        else:
            _close_fds(sock_dup, file_dup)
    return sent


def _send_until_full(sock_fd: int, file_fd: int, offset: int, count: int) -> tuple[int, bool]:
    """Worker: sendfile until done, end of file, or a full socket; (bytes sent, socket full)."""
    sent = 0
    limit = min(count, MAX_BYTES_PER_CALL)
    while sent < limit:
        try:
            step = os.sendfile(sock_fd, file_fd, offset + sent, limit - sent)
        except BlockingIOError:
            return sent, True
        if step == 0:
            break
        sent += step
    return sent, False


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait until ``fd`` is writable (or in error, which the next send reports)."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def _close_after(call: asyncio.Future[tuple[int, bool]], *fds: int) -> None:
    """Close ``fds`` once the worker using them is done; its outcome no longer matters."""
    if not call.cancelled():
        call.exception()  # retrieved, so asyncio does not log it as never retrieved
    _close_fds(*fds)


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
