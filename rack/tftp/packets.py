"""TFTP packets (RFC 1350) with option extensions (RFC 2347 OACK). Pure."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6

# Error codes (RFC 1350, RFC 2347).
NOT_DEFINED = 0
FILE_NOT_FOUND = 1
ACCESS_VIOLATION = 2
ILLEGAL_OPERATION = 4
UNKNOWN_TID = 5
OPTION_REFUSED = 8

_MAX_REQUEST = 512  # RFC 2347: a request with its options fits one 512-byte packet


class PacketError(ValueError):
    """A datagram that is not a well-formed TFTP packet."""


@dataclass(frozen=True)
class Request:
    """A read or write request: what, how, and the options asked for (names lowercased)."""

    opcode: int
    filename: str
    mode: str
    options: dict[str, str] = field(default_factory=dict)


def opcode_of(data: bytes) -> int:
    """The opcode of ``data``, or 0 when too short."""
    return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 0


def parse_request(data: bytes) -> Request:
    """An RRQ or WRQ; PacketError when malformed."""
    opcode = opcode_of(data)
    if opcode not in (RRQ, WRQ):
        raise PacketError(f"opcode {opcode} is not a request")
    if len(data) > _MAX_REQUEST or not data.endswith(b"\x00"):
        raise PacketError("request too long or not NUL-terminated")
    fields = data[2:-1].split(b"\x00")
    if len(fields) < 2 or len(fields) % 2:
        raise PacketError("request needs a file name, a mode and option name/value pairs")
    try:
        text = [f.decode("ascii") for f in fields]
    except UnicodeDecodeError:
        raise PacketError("request fields must be ASCII") from None
    options: dict[str, str] = {}
    for name, value in zip(text[2::2], text[3::2], strict=True):
        options.setdefault(name.lower(), value)
    return Request(opcode=opcode, filename=text[0], mode=text[1].lower(), options=options)


def parse_ack(data: bytes) -> int | None:
    """The block number of an ACK, or None when ``data`` is not one."""
    if len(data) < 4 or opcode_of(data) != ACK:
        return None
    return int(struct.unpack("!H", data[2:4])[0])


def parse_error(data: bytes) -> tuple[int, str] | None:
    """Code and message of an ERROR packet, or None."""
    if len(data) < 4 or opcode_of(data) != ERROR:
        return None
    code = int(struct.unpack("!H", data[2:4])[0])
    return code, data[4:].split(b"\x00", 1)[0].decode("ascii", "replace")


def data_packet(block: int, payload: bytes) -> bytes:
    """DATA for ``block`` (taken modulo 65536: the block number rolls over to 0)."""
    return struct.pack("!HH", DATA, block & 0xFFFF) + payload


def ack_packet(block: int) -> bytes:
    """ACK for ``block`` (modulo 65536)."""
    return struct.pack("!HH", ACK, block & 0xFFFF)


def error_packet(code: int, message: str) -> bytes:
    """ERROR with ``code`` and an ASCII ``message``."""
    text = message.encode("ascii", "replace")[:400]
    return struct.pack("!HH", ERROR, code) + text + b"\x00"


def oack_packet(options: dict[str, str]) -> bytes:
    """OACK acknowledging ``options`` (name → value)."""
    body = b"".join(f"{k}\x00{v}\x00".encode("ascii") for k, v in options.items())
    return struct.pack("!H", OACK) + body


def request_packet(
    opcode: int, filename: str, mode: str = "octet", options: dict[str, int] | None = None
) -> bytes:
    """An RRQ or WRQ (for clients and tests)."""
    body = f"{filename}\x00{mode}\x00" + "".join(
        f"{k}\x00{v}\x00" for k, v in (options or {}).items()
    )
    return struct.pack("!H", opcode) + body.encode("ascii")
