"""The rack's TFTP server: read requests for files of the ``current`` snapshot.

One listener (UDP port 69 by default) on the event loop takes requests; each read
request gets a session with a socket of its own (its transfer ID, RFC 1350) connected
to the client, so the kernel drops what other peers send to it. Write requests are
refused with an error packet; so are modes other than ``octet`` (firmware asks for
octet; ``netascii`` would rewrite boot files).

Options (RFC 2347, answered with an OACK): ``blksize`` (RFC 2348, 8 to
:attr:`TftpSettings.max_blksize`), ``tsize`` (RFC 2349: the file's size),
``timeout`` (RFC 2349: 1 to 255 seconds between retransmissions) and
``windowsize`` (RFC 7440, 1 to :attr:`TftpSettings.max_windowsize` blocks in
flight). Unknown options are ignored; a value out of range is clipped to it.

``current`` is resolved once, at the request, and the file is held open for
the whole transfer: a transfer keeps the snapshot it started on even when a new
one is published meanwhile. The event loop resolves the name, opens or renders the
file and negotiates the options; the transfer itself (the OACK's ACK, then the data)
runs in a worker thread of a pool as large as the session limit, on the session's
socket in blocking mode: send a window, wait for its ACK with the socket's receive
timeout as the retransmission deadline, read the file ahead with ``os.preadv``
straight into reused packet buffers. The GIL is released in every syscall, so a
block costs a few microseconds of Python instead of an event-loop round. A window of
several blocks goes out in one ``sendmsg`` with UDP GSO where the kernel allows it.
A window not acknowledged in time is sent again with the timeout doubled each
time (up to :data:`MAX_TIMEOUT_S`), :attr:`TftpSettings.retries` times at most.
A duplicate ACK is ignored (no Sorcerer's Apprentice); an ACK of a block inside
the window restarts the window after it (RFC 7440). At most
:attr:`TftpSettings.max_sessions` transfers run at once; one more is refused.
:meth:`TftpServer.stop` flags running transfers and shuts their sockets down, which
wakes their threads at once.
A name the operator's boot config templates hold (``[boot] templates_dir``) is
rendered against that same snapshot and sent from memory (rack/bootconfig.py);
one that cannot be rendered whole is refused with an error naming why.
Each transfer is one debug log event (``tftp_transfer_finished`` or
``tftp_transfer_failed``), logged from the event loop, and is counted in
:class:`TftpStats` (``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
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
READ_AHEAD = 64 * 1024  # bytes of the file read at once (at least one window)
MAX_IOV = 1024  # IOV_MAX: buffers one os.preadv fills
RECEIVE_BUFFER = 516  # bytes of a client's datagram kept (an ERROR's message fits)
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


class _Stopped(Exception):
    """The server stopped while the transfer ran (its worker thread returns at once)."""


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
        self._pool: ThreadPoolExecutor | None = None  # runs the transfers' data phases

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
        # One thread per running transfer at most: the session limit refuses the one more.
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, self.settings.max_sessions), thread_name_prefix="tftp-transfer"
        )
        log.info("tftp_server_started", host=self.settings.host, port=self.port)

    async def stop(self) -> None:
        """Close the listener and stop running transfers (their threads end at once)."""
        if self._listener is not None and self._listener.transport is not None:
            self._listener.transport.close()
        self._listener = None
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)
        if (pool := self._pool) is not None:
            self._pool = None
            try:
                await asyncio.to_thread(pool.shutdown)  # idle threads only: returns at once
            except RuntimeError:  # the loop's own executor is shut down: let them go
                pool.shutdown(wait=False)

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
        if len(self._sessions) >= self.settings.max_sessions or self._pool is None:
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
        started = time.monotonic()
        family = socket.AF_INET6 if ":" in client[0] else socket.AF_INET
        host = self.settings.host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - the wildcard: let routing pick
            host = "::" if family == socket.AF_INET6 else "0.0.0.0"  # noqa: S104
        raw = socket.socket(family, socket.SOCK_DGRAM)
        try:
            raw.setblocking(False)  # on the loop; blocking in the worker thread
            raw.bind((host, 0))
            raw.connect(client)  # the kernel drops datagrams from any other peer
        except OSError:
            raw.close()
            raise
        self.stats.active += 1
        transfer = _Transfer(self, request, raw)
        try:
            await transfer.run()
        except _Stopped:
            pass  # the server stops: neither sent nor failed
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
            raw.close()

    async def current_snapshot(self) -> Path | None:
        """The snapshot ``current`` points at now (resolved once per transfer)."""
        try:
            target = await asyncio.to_thread(os.readlink, self.boot_resources / "current")
        except OSError:
            return None
        return self.boot_resources / target

    async def in_worker(self, transfer: _Transfer, oack: bytes | None) -> None:
        """Run ``transfer``'s data phase in the pool; when cancelled (:meth:`stop`), stop
        the thread and wait for it before the file and socket are closed."""
        if self._pool is None:
            raise _Stopped
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, transfer.send_all, oack)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            transfer.cancel()
            while not future.done():
                try:
                    await asyncio.wait([future])
                except asyncio.CancelledError:  # again: still wait for the thread
                    transfer.cancel()
            if not future.cancelled():
                future.exception()  # retrieved (a _Stopped): the cancellation goes on
            raise


class _Transfer:
    """One read transfer on its own socket: prepared on the event loop (:meth:`run`), sent
    from a worker thread (:meth:`send_all`)."""

    def __init__(self, server: TftpServer, request: packets.Request, raw: socket.socket) -> None:
        self.server = server
        self.settings = server.settings
        self.request = request
        self.raw = raw  # connected to the client; blocking once in the worker thread
        self.file: OpenFile | None = None
        self.snapshot = ""
        self.blksize = DEFAULT_BLKSIZE
        self.windowsize = 1
        self.timeout_s = self.settings.timeout_s
        self.sent_bytes = 0  # written by the worker thread; read once it returned
        self.retransmits = 0  # likewise
        self._cancelled = False  # set from the event loop: the thread stops at its next wait
        # The worker thread's state (:meth:`send_all`):
        self._fd = -1
        self._size = 0
        self._total = 0  # blocks in the file; the last one is short, maybe empty
        self._slot = 0  # bytes of one DATA packet slot in the buffer: blksize + 4
        self._buffer = bytearray()  # DATA packets, headers written, of blocks from _first
        self._view = memoryview(self._buffer)
        self._payloads: list[memoryview] = []  # each slot's payload part (os.preadv fills)
        self._first = 0  # the block in the buffer's first slot (0: nothing read yet)
        self._count = 0  # blocks read into the buffer
        self._gso = True  # windows go out with UDP GSO (sendmsg) until the kernel refuses
        self._wait_s = -1.0  # the socket's receive timeout now (SO_RCVTIMEO)
        self._received = bytearray(RECEIVE_BUFFER)  # what the client sent last

    def close(self) -> None:
        if self.file is not None:
            os.close(self.file.fd)
            self.file = None

    def cancel(self) -> None:
        """Make the worker thread stop: flag it and wake it from a blocking receive."""
        self._cancelled = True
        with contextlib.suppress(OSError):  # closed already
            self.raw.shutdown(socket.SHUT_RDWR)

    def _send_error(self, code: int, message: str) -> None:
        with contextlib.suppress(OSError):  # the client went away: nothing to tell it
            self.raw.send(packets.error_packet(code, message))

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
        oack = packets.oack_packet(accepted) if accepted else None
        await self.server.in_worker(self, oack)

    async def _rendered(self, snapshot: Path) -> OpenFile | None:
        """The request's boot config template rendered against ``snapshot``, or None when
        it names none (rack/bootconfig.py). The rack's URL is told with the address the
        request came in on."""
        boot = self.server.boot
        if boot is None or boot.templates_dir is None:
            return None
        name = clean_name(self.request.filename)
        local_host = str(self.raw.getsockname()[0])
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

    # ------------------------------------------------------------ the worker thread

    def send_all(self, oack: bytes | None) -> None:
        """The data phase, in a worker thread: the OACK until ACK 0, then the file. Raises
        _Failed (logged by the event loop) or _Stopped (the server stops)."""
        file = self.file
        if file is None:
            raise _Stopped
        try:
            self.raw.setblocking(True)  # receives wait with SO_RCVTIMEO (one syscall each)
            if oack is not None:
                self._send_oack(oack)
            self._send_file(file)
        except ConnectionRefusedError:
            raise _Failed("client_gone", "the client's port is unreachable") from None
        except OSError as exc:
            if self._cancelled:
                raise _Stopped from None
            raise _Failed("client_gone", f"the client cannot be reached: {exc}") from None

    def _send_oack(self, packet: bytes) -> None:
        timeout = self.timeout_s
        received = self._received
        for attempt in range(self.settings.retries + 1):
            if attempt:
                self.retransmits += 1
            self.raw.send(packet)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                self._wait(left)
                size = self._receive()
                if size < 0:
                    break
                if size >= 4 and _HEADER.unpack_from(received) == (packets.ACK, 0):
                    return
                self._check_error(size)
            timeout = min(timeout * 2, MAX_TIMEOUT_S)
        raise _Failed("timeout", "no ACK of the options")

    def _send_file(self, file: OpenFile) -> None:
        """Send ``file`` window by window; each window's ACK is waited for with the socket's
        receive timeout as its deadline (a duplicate ACK or a stray datagram waits only for
        what is left of it); a window not acknowledged in time is sent again, the timeout
        doubled each time, :attr:`TftpSettings.retries` times at most. This loop runs once
        per block in lock-step: it keeps to locals, and rare cases go to helpers."""
        self._prepare(file)
        send, full, view, slot = self.raw.send, self._full, self._view, self._slot
        blksize, size, total, windowsize = self.blksize, self._size, self._total, self.windowsize
        acked = 0  # blocks the client acknowledged, in order
        timeout, tries = self.timeout_s, 0
        try:
            while acked < total:
                count = min(windowsize, total - acked)
                index = acked + 1 - self._first  # the window's first slot in the buffer
                if index < 0 or index + count > self._count:
                    self._read(acked + 1)
                    index = 0
                if count > 1:
                    self._send_window(index, count)
                elif acked + 1 < total:
                    send(full[index])
                else:  # the last block: short, maybe empty
                    send(view[index * slot : index * slot + 4 + size - acked * blksize])
                if self._wait_s != timeout:
                    self._wait(timeout)
                moved = self._await_ack(acked, count, timeout)
                if moved:  # RFC 7440: the next window starts after the block acknowledged
                    acked += moved
                    if tries:
                        tries, timeout = 0, self.timeout_s
                    continue
                tries += 1
                if tries > self.settings.retries:
                    raise _Failed("timeout", f"no ACK after block {acked}")
                timeout = min(timeout * 2, MAX_TIMEOUT_S)
                self.retransmits += count  # the same window again
        finally:
            self.sent_bytes = min(acked * blksize, size)

    def _await_ack(self, acked: int, count: int, timeout: float) -> int:
        """How many blocks of the window of ``count`` after ``acked`` the client's next ACK
        acknowledges, or 0 when none came within ``timeout`` seconds (a duplicate ACK or a
        stray datagram waits only for what is left of that)."""
        receive, received = self.raw.recv_into, self._received
        sent_at = time.monotonic()
        while True:
            try:
                got = receive(received)
            except BlockingIOError:  # SO_RCVTIMEO: the deadline passed
                return 0
            if got >= 4:
                opcode, block = _HEADER.unpack_from(received)
                moved: int = (block - acked) & 0xFFFF  # a window is never 65536 blocks long
                if opcode == packets.ACK and 0 < moved <= count:
                    return moved
            if self._cancelled:
                raise _Stopped
            self._check_error(got)
            left = sent_at + timeout - time.monotonic()
            if left <= 0:
                return 0
            self._wait(left)

    def _prepare(self, file: OpenFile) -> None:
        """The packet buffer: one slot (header and payload) per block it holds, at least a
        window and :data:`READ_AHEAD` bytes (at most :data:`MAX_IOV` slots beyond a window)."""
        self._fd, self._size = file.fd, file.size
        self._slot = slot = self.blksize + 4
        self._total = file.size // self.blksize + 1  # the last one is short, maybe empty
        slots = max(self.windowsize, min(READ_AHEAD // self.blksize, MAX_IOV))
        self._buffer = bytearray(slots * slot)
        self._view = view = memoryview(self._buffer)
        self._full = [view[n * slot : (n + 1) * slot] for n in range(slots)]
        self._payloads = [packet[4:] for packet in self._full]

    def _send_window(self, index: int, count: int) -> None:
        """Send ``count`` blocks from slot ``index`` of the buffer (only the file's last
        block is short: the packets lie end to end) in as few UDP GSO sends as allowed,
        else packet by packet."""
        slot, blksize = self._slot, self.blksize
        last = self._first + index + count - 1
        start = index * slot
        end = start + (count - 1) * slot + 4 + min(blksize, self._size - (last - 1) * blksize)
        window = self._view[start:end]
        sent = self._send_segmented(window, count) if self._gso else 0
        for offset in range(sent * slot, len(window), slot):
            self.raw.send(window[offset : offset + slot])

    def _send_segmented(self, window: memoryview, count: int) -> int:
        """Send the window in as few syscalls as UDP GSO allows (the kernel cuts the buffer
        at ``blksize + 4`` bytes; only the last packet may be short); how many packets went.
        Where GSO is refused (an old kernel, a blksize above the MTU) the transfer stops
        using it and the rest goes packet by packet."""
        slot = self._slot
        per_call = min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // slot)
        if per_call < 2:
            self._gso = False
            return 0
        control = [(socket.SOL_UDP, UDP_SEGMENT, _SEGMENT.pack(slot))]
        sent = 0
        try:
            while count - sent > 1:
                chunk = min(per_call, count - sent)
                self.raw.sendmsg([window[sent * slot : (sent + chunk) * slot]], control)
                sent += chunk
        except (ConnectionRefusedError, BrokenPipeError):
            raise  # the client went away, or the server stops
        except OSError:
            self._gso = False
        return sent

    def _read(self, first: int) -> None:
        """Fill the buffer with blocks from ``first`` (as many as it holds): one
        ``os.preadv`` per :data:`MAX_IOV` blocks, straight into the packets' payloads."""
        blksize = self.blksize
        count = min(len(self._payloads), self._total - first + 1)
        offset = (first - 1) * blksize
        expected = min(count * blksize, self._size - offset)
        got = 0
        for start in range(0, count, MAX_IOV):
            chunk = self._payloads[start : min(count, start + MAX_IOV)]
            got += os.preadv(self._fd, chunk, offset + got)
        if got != expected:
            raise _Failed("read_failed", "the file is shorter than it was")
        pack_into, buffer, slot, data = _HEADER.pack_into, self._buffer, self._slot, packets.DATA
        for n in range(count):
            pack_into(buffer, n * slot, data, (first + n) & 0xFFFF)  # rolls over past 65535
        self._first, self._count = first, count

    def _receive(self) -> int:
        """Bytes of the next datagram (in :attr:`_received`), or -1 when none came in time."""
        try:
            size = self.raw.recv_into(self._received)
        except BlockingIOError:
            return -1
        if self._cancelled:
            raise _Stopped
        return size

    def _check_error(self, size: int) -> None:
        """Raise when the datagram received is an ERROR packet."""
        if (error := packets.parse_error(bytes(self._received[:size]))) is not None:
            raise _Failed("client_error", f"the client sent error {error[0]}: {error[1]}")

    def _wait(self, seconds: float) -> None:
        """Set how long a receive waits (SO_RCVTIMEO; never 0, which waits for ever)."""
        whole, micro = divmod(max(int(seconds * 1_000_000), 1000), 1_000_000)
        self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(whole, micro))
        self._wait_s = seconds


_HEADER = struct.Struct("!HH")  # opcode, block (DATA, ACK)
_SEGMENT = struct.Struct("=H")  # UDP_SEGMENT's value: the size the kernel cuts at
_TIMEVAL = struct.Struct("@ll")  # struct timeval: seconds, microseconds


def _number(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)
