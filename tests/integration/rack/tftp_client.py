"""A small blocking TFTP client for tests, able to misbehave on purpose (run it in a thread)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from rack.tftp import packets


@dataclass
class Fetched:
    """What one read request got back."""

    data: bytes = b""
    error: tuple[int, str] | None = None
    oack: dict[str, str] = field(default_factory=dict)
    data_packets: int = 0  # DATA packets received, duplicates included
    duplicates: int = 0


def fetch(
    port: int,
    name: str,
    *,
    options: dict[str, int] | None = None,
    skip_ack: Callable[[int, int], bool] = lambda _block, _seen: False,
    ack_twice: bool = False,
    after_block: Callable[[int], None] = lambda _block: None,
    opcode: int = packets.RRQ,
    timeout_s: float = 10.0,
) -> Fetched:
    """Read ``name`` from 127.0.0.1:``port``, acknowledging each window's last block
    (RFC 7440; windowsize 1 unless asked).

    ``skip_ack(block, times_seen)`` True drops that ACK (a lost ACK); ``ack_twice`` sends
    every ACK twice (duplicate ACKs); ``after_block(block)`` runs after each new block.
    """
    result = Fetched()
    blksize = (options or {}).get("blksize", 512)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(packets.request_packet(opcode, name, options=options), ("127.0.0.1", port))
        expected = 1
        window = 1
        since_ack = 0
        seen: dict[int, int] = {}
        chunks: list[bytes] = []
        while True:
            data, peer = sock.recvfrom(65536)
            opcode_in = packets.opcode_of(data)
            if opcode_in == packets.ERROR:
                result.error = packets.parse_error(data)
                return result
            if opcode_in == packets.OACK:
                fields = data[2:].split(b"\x00")[:-1]
                result.oack = {
                    k.decode(): v.decode() for k, v in zip(fields[::2], fields[1::2], strict=True)
                }
                blksize = int(result.oack.get("blksize", blksize))
                window = int(result.oack.get("windowsize", 1))
                sock.sendto(packets.ack_packet(0), peer)
                continue
            block = struct.unpack("!H", data[2:4])[0]
            result.data_packets += 1
            seen[block] = seen.get(block, 0) + 1
            last = False
            if block != expected & 0xFFFF:
                result.duplicates += 1
                since_ack = window  # out of order: acknowledge what arrived in order
            else:
                chunks.append(data[4:])
                expected += 1
                since_ack += 1
                last = len(data) - 4 < blksize
                after_block(block)
            if since_ack < window and not last:
                continue
            since_ack = 0
            if skip_ack(block, seen[block]):
                continue
            for _ in range(2 if ack_twice else 1):
                sock.sendto(packets.ack_packet((expected - 1) & 0xFFFF), peer)
            if last:
                result.data = b"".join(chunks)
                return result
