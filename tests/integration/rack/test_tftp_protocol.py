"""The rack's TFTP server against a small client that misbehaves on purpose.

The snapshot is a real directory tree under boot-resources/ with ``current`` linking
it; the server listens on a free high UDP port of 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rack.app import tftp_metrics
from rack.tftp import packets
from rack.tftp.server import TftpServer, TftpSettings
from tests.fakes.waiting import eventually
from tests.integration.rack.tftp_client import fetch


def make_snapshot(root: Path, name: str, files: dict[str, bytes]) -> Path:
    """A snapshot ``name`` holding ``files``, ``current`` switched to it."""
    snap = root / "snapshots" / name
    for rel, data in files.items():
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        (snap / rel).write_bytes(data)
    link = root / "current.new"
    link.symlink_to(Path("snapshots") / name)
    link.replace(root / "current")
    return snap


KERNEL = random.Random("kernel").randbytes(100_000)  # not a secret


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TftpServer]:
    """A server (retransmission after 0.2 s) of a snapshot with a kernel and a bootloader."""
    root = tmp_path / "boot-resources"
    make_snapshot(root, "a", {"boot-kernel": KERNEL, "bootloader/pxe/i386/lpxelinux.0": b"p"})
    (root / "snapshots/a/lpxelinux.0").symlink_to("bootloader/pxe/i386/lpxelinux.0")
    tftp = TftpServer(root, TftpSettings(host="127.0.0.1", port=0, timeout_s=0.2, max_sessions=2))
    await tftp.start()
    try:
        yield tftp
    finally:
        await tftp.stop()


async def test_a_lost_ack_is_answered_by_retransmitting_the_block(server: TftpServer) -> None:
    """The client drops its first ACK of block 5: the server sends block 5 again after its
    timeout (counted as one retransmission, on /metrics too) and the file still arrives
    whole."""
    got = await asyncio.to_thread(
        fetch, server.port, "boot-kernel", skip_ack=lambda block, seen: block == 5 and seen == 1
    )
    assert got.data == KERNEL
    assert got.duplicates == 1
    await eventually(lambda: server.stats.files == 1, "the transfer counted")
    assert server.stats.retransmits == 1
    exposed = {m.name: m for m in tftp_metrics(server)}
    assert exposed["bootsync_tftp_retransmits"].samples[0].value == 1


async def test_duplicate_acks_do_not_make_the_server_send_blocks_twice(
    server: TftpServer,
) -> None:
    """Every ACK sent twice: each block still arrives once (no Sorcerer's Apprentice)."""
    got = await asyncio.to_thread(fetch, server.port, "boot-kernel", ack_twice=True)
    assert got.data == KERNEL
    assert got.duplicates == 0
    assert got.data_packets == len(KERNEL) // 512 + 1


async def test_options_are_negotiated_and_clipped_to_the_servers_limits(
    server: TftpServer,
) -> None:
    """blksize above the cap is clipped to 1468, tsize answers the size, timeout is kept."""
    got = await asyncio.to_thread(
        fetch,
        server.port,
        "/lpxelinux.0",
        options={"blksize": 9000, "tsize": 0, "timeout": 3},
    )
    assert got.oack == {"blksize": "1468", "tsize": "1", "timeout": "3"}
    assert got.data == b"p"


async def test_writes_escapes_and_other_modes_are_refused_with_the_right_error(
    server: TftpServer, tmp_path: Path
) -> None:
    """WRQ → access violation; '..', absolute-after-strip tricks, a symlink out → access
    violation; a missing file → file not found; netascii → illegal operation."""
    (tmp_path / "outside").write_bytes(b"secret")
    (server.boot_resources / "snapshots/a/out").symlink_to(tmp_path / "outside")
    cases = {
        ("boot-kernel", packets.WRQ): packets.ACCESS_VIOLATION,
        ("../../outside", packets.RRQ): packets.ACCESS_VIOLATION,
        ("a/../boot-kernel", packets.RRQ): packets.ACCESS_VIOLATION,
        ("out", packets.RRQ): packets.ACCESS_VIOLATION,
        ("no-such-file", packets.RRQ): packets.FILE_NOT_FOUND,
        ("BOOT-KERNEL", packets.RRQ): packets.FILE_NOT_FOUND,  # case as given
    }
    for (name, opcode), code in cases.items():
        got = await asyncio.to_thread(fetch, server.port, name, opcode=opcode)
        assert got.error is not None, name
        assert got.error[0] == code, (name, got.error)
    ascii_mode = packets.request_packet(packets.RRQ, "boot-kernel", mode="netascii")
    reply = await asyncio.to_thread(raw_exchange, server.port, ascii_mode)
    assert packets.parse_error(reply) is not None
    assert packets.parse_error(reply)[0] == packets.ILLEGAL_OPERATION  # type: ignore[index]


def raw_exchange(port: int, packet: bytes) -> bytes:
    """Send ``packet`` to the server, return its first answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(packet, ("127.0.0.1", port))
        return sock.recvfrom(65536)[0]


async def test_a_transfer_keeps_its_snapshot_when_current_switches(
    server: TftpServer,
) -> None:
    """current switches (and the old snapshot is deleted) after block 2: the transfer still
    sends the old file whole; the next request gets the new one."""
    root = server.boot_resources
    new_kernel = b"new" * 50_000
    loop = asyncio.get_running_loop()

    def switch(block: int) -> None:
        if block == 2:
            make_snapshot(root, "b", {"boot-kernel": new_kernel})
            shutil.rmtree(root / "snapshots/a")

    got = await asyncio.to_thread(fetch, server.port, "boot-kernel", after_block=switch)
    assert got.data == KERNEL
    again = await asyncio.to_thread(fetch, server.port, "boot-kernel")
    assert again.data == new_kernel
    assert loop.is_running()


async def test_a_client_that_stops_acking_ends_the_transfer_and_frees_its_session(
    server: TftpServer,
) -> None:
    """After its retries (with backoff) the session ends as failed; the session limit
    refuses a third transfer while two run, and metrics count it all."""
    await server.stop()
    server = TftpServer(
        server.boot_resources,
        TftpSettings(host="127.0.0.1", port=0, timeout_s=0.1, retries=2, max_sessions=2),
    )
    await server.start()
    blocked = [
        asyncio.to_thread(
            fetch, server.port, "boot-kernel", skip_ack=lambda _b, _s: True, timeout_s=2
        )
        for _ in range(2)
    ]
    tasks = [asyncio.ensure_future(b) for b in blocked]
    await eventually(lambda: server.stats.active == 2, "two transfers running")
    busy = await asyncio.to_thread(fetch, server.port, "boot-kernel")
    assert busy.error is not None
    assert busy.error[1] == "too many transfers"
    for task in tasks:
        with pytest.raises(TimeoutError):
            await task
    await server.stop()
    assert server.stats.active == 0
    assert server.stats.errors == {"busy": 1, "timeout": 2}
    exposed = {m.name: m for m in tftp_metrics(server)}
    assert exposed["bootsync_tftp_active_sessions"].samples[0].value == 0
    errors = {s.labels["reason"]: s.value for s in exposed["bootsync_tftp_errors"].samples}
    assert errors == {"busy": 1, "timeout": 2}


async def test_stopping_the_server_ends_a_transfer_waiting_for_an_ack_at_once(
    tmp_path: Path,
) -> None:
    """A transfer whose client never ACKs (retransmission after 30 s) is stopped with the
    server well within a second: its worker thread ends, nothing counts as failed."""
    root = tmp_path / "boot-resources"
    make_snapshot(root, "a", {"boot-kernel": KERNEL})
    server = TftpServer(root, TftpSettings(host="127.0.0.1", port=0, timeout_s=30))
    await server.start()
    client = asyncio.ensure_future(
        asyncio.to_thread(
            fetch, server.port, "boot-kernel", skip_ack=lambda _b, _s: True, timeout_s=3
        )
    )
    await eventually(lambda: server.stats.active == 1, "the transfer running")
    await asyncio.sleep(0.2)  # in its worker thread, waiting for the first ACK
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 1
    assert not [t for t in threading.enumerate() if t.name.startswith("tftp-transfer")]
    assert server.stats.active == 0
    assert server.stats.errors == {}
    assert server.stats.files == 0
    with pytest.raises(TimeoutError):
        await client


async def test_an_error_from_the_client_ends_the_transfer(server: TftpServer) -> None:
    """The client answers the OACK with an ERROR (option refused): the transfer ends at
    once as ``client_error``, not after its retransmissions."""
    request = packets.request_packet(packets.RRQ, "boot-kernel", options={"blksize": 1024})

    def refuse_options() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(request, ("127.0.0.1", server.port))
            oack, peer = sock.recvfrom(65536)
            sock.sendto(packets.error_packet(packets.OPTION_REFUSED, "no thanks"), peer)
            return oack

    oack = await asyncio.to_thread(refuse_options)
    assert packets.opcode_of(oack) == packets.OACK
    await eventually(lambda: server.stats.errors == {"client_error": 1}, "the failure counted")
    assert server.stats.retransmits == 0
    assert server.stats.active == 0


async def test_an_ack_inside_the_window_restarts_the_window_after_it(
    server: TftpServer,
) -> None:
    """windowsize 4: the client acknowledges block 2 of the first window (RFC 7440, blocks
    3 and 4 lost); the next window is blocks 3 to 6, none counted as retransmitted."""
    request = packets.request_packet(packets.RRQ, "boot-kernel", options={"windowsize": 4})

    def partial_ack() -> list[int]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(request, ("127.0.0.1", server.port))
            _, peer = sock.recvfrom(65536)  # the OACK
            sock.sendto(packets.ack_packet(0), peer)
            first = [sock.recvfrom(65536)[0] for _ in range(4)]
            sock.sendto(packets.ack_packet(2), peer)
            second = [sock.recvfrom(65536)[0] for _ in range(4)]
            sock.sendto(packets.error_packet(packets.NOT_DEFINED, "enough"), peer)
            return [int.from_bytes(d[2:4], "big") for d in first + second]

    blocks = await asyncio.to_thread(partial_ack)
    assert blocks == [1, 2, 3, 4, 3, 4, 5, 6]
    await eventually(lambda: server.stats.errors == {"client_error": 1}, "the transfer ended")
    assert server.stats.retransmits == 0
    assert server.stats.bytes == 2 * 512


async def test_block_numbers_roll_over_past_65535(server: TftpServer) -> None:
    """With blksize 8 a 600 kB file needs 75,001 blocks: numbers wrap to 0 and it arrives whole."""
    big = random.Random("big").randbytes(600_000)  # not a secret
    (server.boot_resources / "snapshots/a/big").write_bytes(big)
    got = await asyncio.to_thread(
        fetch, server.port, "big", options={"blksize": 8, "windowsize": 32}
    )
    assert got.data == big
