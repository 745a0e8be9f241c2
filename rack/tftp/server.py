"""The rack's asyncio TFTP server: read requests for files of the ``current`` snapshot.

One listener (UDP port 69 by default) takes requests; each read request gets a
session with a socket of its own (its transfer ID, RFC 1350) connected to the
client. Write requests are refused with an error packet; so are modes other
than ``octet`` (firmware asks for octet; ``netascii`` would rewrite boot files).

Options (RFC 2347, answered with an OACK): ``blksize`` (RFC 2348, 8 to
:attr:`TftpSettings.max_blksize`), ``tsize`` (RFC 2349: the file's size),
``timeout`` (RFC 2349: 1 to 255 seconds between retransmissions) and
``windowsize`` (RFC 7440, 1 to :attr:`TftpSettings.max_windowsize` blocks in
flight). Unknown options are ignored; a value out of range is clipped to it.

``current`` is resolved once, at the request, and the file is held open for
the whole transfer: a transfer keeps the snapshot it started on even when a new
one is published meanwhile. The file is read ahead in a worker thread
(:data:`READ_AHEAD` bytes, at least a window, at once; the next chunk is read while
the windows before it are in flight). The data phase is driven
by the session socket's callback: an ACK that completes a window sends the next
one from there (no task switch, future or timer per block), a window of several
blocks in one ``sendmsg`` with UDP GSO where the kernel allows it.
A window not acknowledged in time is sent again with the timeout doubled each
time (up to :data:`MAX_TIMEOUT_S`), :attr:`TftpSettings.retries` times at most.
A duplicate ACK is ignored (no Sorcerer's Apprentice); an ACK of a block inside
the window restarts the window after it (RFC 7440). At most
:attr:`TftpSettings.max_sessions` transfers run at once; one more is refused.
A name the operator's boot config templates hold (``[boot] templates_dir``) is
rendered against that same snapshot and sent from memory (rack/bootconfig.py);
one that cannot be rendered whole is refused with an error naming why.
Each transfer is one debug log event (``tftp_transfer_finished`` or
``tftp_transfer_failed``) and is counted in :class:`TftpStats` (``/metrics``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from common.ops.logging import get_logger
from rack.bootconfig import BootConfig, RenderError, render_boot_file
from rack.tftp import packets
from rack.tftp.paths import OpenFile, Refused, clean_name, open_bytes, open_in_snapshot

log = get_logger("rack.tftp")

DEFAULT_BLKSIZE = 512
MAX_BLKSIZE = 65464  # RFC 2348
DEFAULT_MAX_BLKSIZE = 1468  # fits an Ethernet frame with IP and UDP headers
DEFAULT_MAX_WINDOWSIZE = 64
DEFAULT_MAX_SESSIONS = 256
MAX_TIMEOUT_S = 16.0
INBOX_LIMIT = 1024  # datagrams a session keeps unread; more are dropped
READ_AHEAD = 64 * 1024  # bytes of the file read at once (at least one window), one ahead
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h (Python >= 3.12 names it)
GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS of older kernels
GSO_MAX_BYTES = 65_000  # one GSO send is one UDP datagram before it is cut


@dataclass(frozen=True)
class TftpSettings:
    """How the server listens and transfers; build it directly in tests."""

    host: str = "0.0.0.0"  # noqa: S104 - a rack serves every interface by default
    port: int = 69
    max_blksize: int = DEFAULT_MAX_BLKSIZE
    max_windowsize: int = DEFAULT_MAX_WINDOWSIZE
    max_sessions: int = DEFAULT_MAX_SESSIONS
    timeout_s: float = 1.0  # the first retransmission's wait, unless the client asks
    retries: int = 5


@dataclass
class TftpStats:
    """What the server did since it started (read at scrape time for ``/metrics``)."""

    files: int = 0  # transfers completed
    bytes: int = 0  # file bytes sent (retransmissions not counted)
    errors: dict[str, int] = field(default_factory=dict)  # reason -> transfers refused/failed
    active: int = 0  # transfers running now
    retransmits: int = 0  # packets (OACK, DATA) sent again after a timeout

    def error(self, reason: str) -> None:
        """Count one refused or failed transfer."""
        self.errors[reason] = self.errors.get(reason, 0) + 1


class _Failed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, server: TftpServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server.request_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("tftp_socket_error", error=str(exc))


class _SessionSocket(asyncio.DatagramProtocol):
    """A session's own socket: hands what the client sends to :attr:`deliver` (the data
    phase's callback) when set, else keeps it until the session reads it (a waiting
    session is woken by a future)."""

    def __init__(self, raw: socket.socket | None = None) -> None:
        self.raw = raw  # the socket itself, for sendmsg (UDP GSO)
        self.inbox: deque[bytes] = deque()
        self.transport: asyncio.DatagramTransport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.deliver: Callable[[bytes], None] | None = None  # set: datagrams go there instead

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._keep(data)

    def error_received(self, exc: Exception) -> None:
        self._keep(b"")  # e.g. ICMP port unreachable: the client went away

    def _keep(self, data: bytes) -> None:
        if self.deliver is not None:
            self.deliver(data)
            return
        if len(self.inbox) < INBOX_LIMIT:
            self.inbox.append(data)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def receive(self, wait_s: float) -> bytes | None:
        """The next datagram (b"" when the client's port is unreachable), or None after
        ``wait_s`` seconds without one."""
        if not self.inbox:
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = loop.call_later(wait_s, self._wake)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self.inbox:
                return None
        return self.inbox.popleft()


class TftpServer:
    """Serves ``boot_resources/current`` over TFTP; :meth:`start` then :meth:`stop`."""

    def __init__(
        self,
        boot_resources: Path,
        settings: TftpSettings | None = None,
        boot: BootConfig | None = None,
    ) -> None:
        self.boot_resources = boot_resources
        self.settings = settings or TftpSettings()
        self.boot = boot  # boot config templates served rendered (rack/bootconfig.py)
        self.stats = TftpStats()
        self.port = self.settings.port  # the bound port once started (0 picks one)
        self._listener: _Listener | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind the listener (OSError when the address cannot be bound)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Listener(self),
            local_addr=(self.settings.host, self.settings.port),
            family=family,
        )
        self._listener = protocol
        self.port = transport.get_extra_info("sockname")[1]
        log.info("tftp_server_started", host=self.settings.host, port=self.port)

    async def stop(self) -> None:
        """Close the listener and cancel running transfers."""
        if self._listener is not None and self._listener.transport is not None:
            self._listener.transport.close()
        self._listener = None
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)

    def request_received(self, data: bytes, addr: Any) -> None:
        """A datagram on the listener: start a transfer, or refuse it."""
        client = (addr[0], addr[1])
        try:
            request = packets.parse_request(data)
        except packets.PacketError as exc:
            if packets.opcode_of(data) in (packets.RRQ, packets.WRQ):
                self._refuse(client, "", packets.ILLEGAL_OPERATION, "malformed", str(exc))
            return  # stray DATA/ACK on the listener: not ours to answer
        if request.opcode == packets.WRQ:
            self._refuse(
                client,
                request.filename,
                packets.ACCESS_VIOLATION,
                "write_refused",
                "this server only sends files",
            )
            return
        if request.mode != "octet":
            self._refuse(
                client,
                request.filename,
                packets.ILLEGAL_OPERATION,
                "mode_refused",
                f"mode {request.mode!r} is not served; ask for octet",
            )
            return
        if len(self._sessions) >= self.settings.max_sessions:
            self._refuse(
                client, request.filename, packets.NOT_DEFINED, "busy", "too many transfers"
            )
            return
        task = asyncio.create_task(self._session(request, client), name=f"tftp-{client}")
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)

    def _refuse(
        self, client: tuple[str, int], filename: str, code: int, reason: str, message: str
    ) -> None:
        self.stats.error(reason)
        log.debug("tftp_request_refused", client=client[0], file=filename, reason=reason)
        if self._listener is not None and self._listener.transport is not None:
            self._listener.transport.sendto(packets.error_packet(code, message), client)

    async def _session(self, request: packets.Request, client: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        family = socket.AF_INET6 if ":" in client[0] else socket.AF_INET
        host = self.settings.host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - the wildcard: let routing pick
            host = "::" if family == socket.AF_INET6 else "0.0.0.0"  # noqa: S104
        raw = socket.socket(family, socket.SOCK_DGRAM)
        try:
            raw.setblocking(False)
            raw.bind((host, 0))
            raw.connect(client)
            transport, sock = await loop.create_datagram_endpoint(
                lambda: _SessionSocket(raw), sock=raw
            )
        except OSError:
            raw.close()
            raise
        self.stats.active += 1
        transfer = _Transfer(self, request, transport, sock)
        try:
            await transfer.run()
        except _Failed as exc:
            self.stats.error(exc.reason)
            log.debug(
                "tftp_transfer_failed",
                client=client[0],
                file=request.filename,
                reason=exc.reason,
                error=str(exc),
                bytes=transfer.sent_bytes,
                duration_s=round(time.monotonic() - started, 3),
            )
        else:
            self.stats.files += 1
            log.debug(
                "tftp_transfer_finished",
                client=client[0],
                file=request.filename,
                snapshot=transfer.snapshot,
                bytes=transfer.sent_bytes,
                blksize=transfer.blksize,
                windowsize=transfer.windowsize,
                retransmits=transfer.retransmits,
                duration_s=round(time.monotonic() - started, 3),
            )
        finally:
            self.stats.active -= 1
            self.stats.bytes += transfer.sent_bytes
            self.stats.retransmits += transfer.retransmits
            transfer.close()
            transport.close()

    async def current_snapshot(self) -> Path | None:
        """The snapshot ``current`` points at now (resolved once per transfer)."""
        try:
            target = await asyncio.to_thread(os.readlink, self.boot_resources / "current")
        except OSError:
            return None
        return self.boot_resources / target


class _Transfer:
    """One read transfer on its own socket."""

    def __init__(
        self,
        server: TftpServer,
        request: packets.Request,
        transport: asyncio.DatagramTransport,
        sock: _SessionSocket,
    ) -> None:
        self.server = server
        self.settings = server.settings
        self.request = request
        self.transport = transport
        self.sock = sock
        self.file: OpenFile | None = None
        self.snapshot = ""
        self.blksize = DEFAULT_BLKSIZE
        self.windowsize = 1
        self.timeout_s = self.settings.timeout_s
        self.sent_bytes = 0
        self.retransmits = 0
        # The data phase (:meth:`_send_file`), driven by the socket's callback:
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._size = 0
        self._total = 0  # blocks in the file
        self._acked = 0  # blocks the client has acknowledged, in order
        self._window: list[bytes] = []  # DATA packets in flight, from block _acked + 1
        self._deadline = 0.0  # loop time when the window is sent again without an ACK
        self._timeout = self.timeout_s
        self._tries = 0
        self._failure: _Failed | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._buffer = b""  # read ahead from the file, starting at byte _buffered_at
        self._buffered_at = 0
        self._gso = True  # windows go out with UDP GSO (sendmsg) until the kernel refuses
        self._prefetch: asyncio.Task[bytes] | None = None  # the chunk after the buffer

    def close(self) -> None:
        if self.file is not None:
            os.close(self.file.fd)
            self.file = None

    def _send_error(self, code: int, message: str) -> None:
        self.transport.sendto(packets.error_packet(code, message))

    async def run(self) -> None:
        snapshot = await self.server.current_snapshot()
        if snapshot is None:
            self._send_error(packets.FILE_NOT_FOUND, "no images synced yet")
            raise _Failed("not_found", "no snapshot to serve yet")
        self.snapshot = snapshot.name
        try:
            file = await self._rendered(snapshot)
            if file is None:
                file = await asyncio.to_thread(open_in_snapshot, snapshot, self.request.filename)
        except Refused as exc:
            code = packets.ACCESS_VIOLATION if exc.kind == "access" else packets.FILE_NOT_FOUND
            self._send_error(code, str(exc))
            raise _Failed(exc.kind, str(exc)) from None
        except RenderError as exc:
            self._send_error(packets.NOT_DEFINED, str(exc))
            raise _Failed("render_failed", str(exc)) from None
        self.file = file
        accepted = self._negotiate(file.size)
        if accepted:
            await self._send_oack(accepted)
        await self._send_file(file)

    async def _rendered(self, snapshot: Path) -> OpenFile | None:
        """The request's boot config template rendered against ``snapshot``, or None when
        it names none (rack/bootconfig.py). The rack's URL is told with the address the
        request came in on."""
        boot = self.server.boot
        if boot is None or boot.templates_dir is None:
            return None
        name = clean_name(self.request.filename)
        local_host = str(self.transport.get_extra_info("sockname")[0])
        data = await render_boot_file(boot, name, snapshot, boot.url_for_tftp(local_host))
        if data is None:
            return None
        return await asyncio.to_thread(open_bytes, data, boot.templates_dir / name)

    def _negotiate(self, size: int) -> dict[str, str]:
        """The options accepted, with the values this transfer uses."""
        asked = self.request.options
        accepted: dict[str, str] = {}
        if (value := _number(asked.get("blksize"))) is not None and value >= 8:
            self.blksize = min(value, self.settings.max_blksize, MAX_BLKSIZE)
            accepted["blksize"] = str(self.blksize)
        if "tsize" in asked:
            accepted["tsize"] = str(size)
        if (value := _number(asked.get("timeout"))) is not None and 1 <= value <= 255:
            self.timeout_s = float(value)
            accepted["timeout"] = str(value)
        if (value := _number(asked.get("windowsize"))) is not None and value >= 1:
            self.windowsize = min(value, self.settings.max_windowsize, 65535)
            accepted["windowsize"] = str(self.windowsize)
        return accepted

    async def _send_oack(self, accepted: dict[str, str]) -> None:
        packet = packets.oack_packet(accepted)
        timeout = self.timeout_s
        for attempt in range(self.settings.retries + 1):
            if attempt:
                self.retransmits += 1
            self.transport.sendto(packet)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                data = await self._receive(left)
                if data is None:
                    break
                ack = packets.parse_ack(data)
                if ack == 0:
                    return
            timeout = min(timeout * 2, MAX_TIMEOUT_S)
        raise _Failed("timeout", "no ACK of the options")

    async def _send_file(self, file: OpenFile) -> None:
        """Send ``file`` window by window.

        ACKs are handled as they arrive, in the socket's callback (:meth:`_datagram`),
        which sends the next window itself while it is in the read-ahead buffer: no task
        switch, future or timer per block. This coroutine refills the buffer (in a worker
        thread), retransmits when a window's deadline passes, and ends the transfer.
        """
        self._loop = asyncio.get_running_loop()
        self._fd = file.fd
        self._size = file.size
        self._total = file.size // self.blksize + 1  # the last one is short, maybe empty
        self.sock.inbox.clear()  # only duplicate ACKs of the options can be waiting
        self.sock.deliver = self._datagram
        try:
            while True:
                if self._failure is not None:
                    raise self._failure
                if self._acked >= self._total:
                    return
                if not self._window:
                    await self._fill(self._acked + 1)
                    self._window = self._packets(self._acked + 1)
                    if not self._window:
                        raise _Failed("read_failed", "the file is shorter than it was")
                    self._send_window()
                elif self._loop.time() >= self._deadline:
                    self._tries += 1
                    if self._tries > self.settings.retries:
                        raise _Failed("timeout", f"no ACK after block {self._acked}")
                    self._timeout = min(self._timeout * 2, MAX_TIMEOUT_S)
                    self.retransmits += len(self._window)
                    self._send_window()
                await self._until_needed()
        finally:
            self.sock.deliver = None
            if (prefetch := self._prefetch) is not None:  # done with the file before it closes
                self._prefetch = None
                await asyncio.wait([prefetch])
                if not prefetch.cancelled():
                    prefetch.exception()  # retrieved: not logged as never retrieved

    def _datagram(self, data: bytes) -> None:
        """What the client sent during the transfer (called by the socket's protocol)."""
        if not data:
            self._stop_with(_Failed("client_gone", "the client's port is unreachable"))
            return
        if (error := packets.parse_error(data)) is not None:
            message = f"the client sent error {error[0]}: {error[1]}"
            self._stop_with(_Failed("client_error", message))
            return
        window = self._window
        if not window or self._failure is not None:
            return  # nothing in flight: the coroutine is reading the next blocks
        newest = _acknowledged(packets.parse_ack(data), self._acked, self._acked + len(window))
        if newest is None:
            return  # a duplicate ACK (no Sorcerer's Apprentice) or a stray packet
        self.sent_bytes += sum(len(p) - 4 for p in window[: newest - self._acked])
        self._acked = newest
        self._tries, self._timeout = 0, self.timeout_s
        # After a partial window too: RFC 7440 resends from the block after the ACK.
        self._window = self._packets(newest + 1) if newest < self._total else []
        if self._window:
            self._send_window()
        else:
            self._wake()  # the end, or the buffer needs refilling

    def _stop_with(self, failure: _Failed) -> None:
        if self._failure is None:
            self._failure = failure
        self._wake()

    def _send_window(self) -> None:
        window = self._window
        sent = 0
        if len(window) > 1 and self._gso and not _backlog(self.transport):
            sent = self._send_segmented(window)
        sendto = self.transport.sendto
        for packet in window[sent:]:
            sendto(packet)
        self._deadline = self._loop.time() + self._timeout

    def _send_segmented(self, window: list[bytes]) -> int:
        """Send the window in as few syscalls as UDP GSO allows (one buffer of packets the
        kernel cuts at ``blksize + 4`` bytes; only the last may be short); how many went.
        Where GSO is refused (an old kernel, a blksize above the MTU) the session stops
        using it and the rest goes packet by packet."""
        raw = self.sock.raw
        size = self.blksize + 4
        per_call = min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // size)
        if raw is None or per_call < 2:
            self._gso = False
            return 0
        control = [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
        sent = 0
        try:
            while len(window) - sent > 1:
                chunk = window[sent : sent + per_call]
                raw.sendmsg([b"".join(chunk)], control)
                sent += len(chunk)
        except BlockingIOError:
            pass  # the socket's buffer is full: the transport queues the rest
        except OSError:
            self._gso = False
        return sent

    async def _until_needed(self) -> None:
        """Return when the callback has work for the coroutine (the end, a failure, a
        refill) or the window's deadline passed without an ACK moving it."""
        if self._failure is not None or not self._window:
            return
        self._waiter = self._loop.create_future()
        self._timer = self._loop.call_at(self._deadline, self._check_deadline)
        try:
            await self._waiter
        finally:
            self._timer.cancel()
            self._waiter = None

    def _check_deadline(self) -> None:
        if self._window and self._loop.time() < self._deadline:  # ACKs moved it: wait on
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
        else:
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _receive(self, wait_s: float) -> bytes | None:
        data = await self.sock.receive(wait_s)
        if data == b"":
            raise _Failed("client_gone", "the client's port is unreachable")
        return data

    async def _fill(self, first: int) -> None:
        """Make the read-ahead buffer start at block ``first``: what is left of it and the
        next chunk (at least one window and :data:`READ_AHEAD` bytes), read in a worker
        thread while the windows before were in flight; then start reading the one after."""
        start = (first - 1) * self.blksize
        chunk = max(self.windowsize, READ_AHEAD // self.blksize) * self.blksize
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None and self._buffered_at <= start:  # it reads on from the end
            self._buffer = self._buffer[start - self._buffered_at :] + await prefetch
        else:
            if prefetch is not None:
                await asyncio.wait([prefetch])
            self._buffer = await asyncio.to_thread(os.pread, self._fd, chunk, start)
        self._buffered_at = start
        end = start + len(self._buffer)
        if end < self._size:
            self._prefetch = asyncio.ensure_future(
                asyncio.to_thread(os.pread, self._fd, chunk, end)
            )

    def _packets(self, first: int) -> list[bytes]:
        """DATA packets of the window from block ``first``, or [] when the read-ahead
        buffer does not hold all of it."""
        count = min(self.windowsize, self._total - first + 1)
        size = self.blksize
        start = (first - 1) * size
        end = min(start + count * size, self._size)
        offset = start - self._buffered_at
        if offset < 0 or end - self._buffered_at > len(self._buffer):
            return []
        buffer = self._buffer
        return [
            packets.data_packet(first + n, buffer[offset + n * size : offset + (n + 1) * size])
            for n in range(count)
        ]


def _acknowledged(block: int | None, acked: int, last: int) -> int | None:
    """The block in (``acked``, ``last``] that the 16-bit ACK ``block`` names, or None."""
    if block is None:
        return None
    ahead = (block - acked) & 0xFFFF  # a window is never 65536 blocks long
    return acked + ahead if 0 < ahead <= last - acked else None


def _backlog(transport: asyncio.DatagramTransport) -> int:
    """Bytes the transport holds unsent (its socket's buffer was full)."""
    size: int = getattr(transport, "get_write_buffer_size", lambda: 0)()
    return size


def _number(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)
