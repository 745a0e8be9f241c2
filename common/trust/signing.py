"""The signature gate: verify a clearsigned document against a pinned keyring.

The payload handed back is what gpg itself emits as the verified text, never a
slice of the input. Input must be exactly one clearsigned block: text before the
``BEGIN PGP SIGNED MESSAGE`` header or after the signature block is refused,
because gpg would silently ignore it and a reader of the raw file would not.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from common.errors import (
    BadSignatureError,
    ExpiredKeyError,
    KeyringError,
    NoSignatureError,
    TamperedPayloadError,
    UnknownKeyError,
)
from common.ops.logging import get_logger
from common.trust.keyrings import Keyring, gpg_for, status_lines, throwaway_home

log = get_logger(__name__)

_HEADER = b"-----BEGIN PGP SIGNED MESSAGE-----"
_END = b"-----END PGP SIGNATURE-----"
_SPACE = re.compile(rb"\s*")
# gpg's stdin and stdout in 1 MiB pieces (python-gnupg reads 1 KiB at a time by default).
_GPG_BUFFER = 1 << 20
_EXPIRED = frozenset({"EXPKEYSIG", "KEYEXPIRED", "EXPSIG"})
_ERRSIG_NO_PUBKEY = "9"

Status = list[tuple[str, list[str]]]


@dataclass(frozen=True)
class VerifiedDocument:
    """A document that passed the gate: the verified payload and who signed it.

    ``fingerprint`` is the signer's primary key fingerprint, or None when the
    document was unsigned and the caller allowed that (``signed`` is then False).
    """

    payload: bytes
    fingerprint: str | None
    signed: bool


def verify_clearsigned(
    data: bytes, keyring: Keyring, *, source: str = "", allow_unsigned: bool = False
) -> VerifiedDocument:
    """Verify ``data`` as one clearsigned message by a primary key of ``keyring``.

    Unsigned data (no clearsign header) raises NoSignatureError unless
    ``allow_unsigned``, in which case it is returned as is. Raises
    TamperedPayloadError (BADSIG), BadSignatureError (damaged or unreadable
    signature, stray text around it), UnknownKeyError (signer not in the keyring),
    ExpiredKeyError (expired key or signature) and KeyringError (empty keyring).
    Every message names ``source``. Runs gpg; call it from a worker thread.
    A document of megabytes is scanned with ``bytes.find`` only, never a regex,
    so that this thread does not hold the GIL (and stall the event loop) for long.
    """
    if not _armor_line_at(data, _HEADER, 0):
        if _HEADER in data:
            raise BadSignatureError("text before the signed message header", source=source)
        if not allow_unsigned:
            raise NoSignatureError("document is not clearsigned", source=source)
        log.warning("unsigned_document_accepted", source=source, bytes=len(data))
        return VerifiedDocument(payload=data, fingerprint=None, signed=False)
    _check_single_block(data, source)
    if not keyring.fingerprints:
        raise KeyringError("keyring holds no key to verify with", source=source)
    started = time.monotonic()
    payload, statuses, returncode = _run_gpg(data, keyring)
    fingerprint = _judge(statuses, returncode, keyring, source)
    log.info(
        "signature_verified",
        source=source,
        fingerprint=fingerprint,
        bytes=len(payload),
        duration_s=round(time.monotonic() - started, 3),
    )
    return VerifiedDocument(payload=payload, fingerprint=fingerprint, signed=True)


async def averify_clearsigned(
    data: bytes, keyring: Keyring, *, source: str = "", allow_unsigned: bool = False
) -> VerifiedDocument:
    """:func:`verify_clearsigned` in a worker thread, so the event loop keeps running."""
    return await asyncio.to_thread(
        verify_clearsigned, data, keyring, source=source, allow_unsigned=allow_unsigned
    )


def _check_single_block(data: bytes, source: str) -> None:
    # In the signed text every line starting with "-" is dash-escaped, so these
    # armor lines at a line start can only be real boundaries.
    if _next_armor_line(data, _HEADER, 1) >= 0:
        raise BadSignatureError("more than one signed message", source=source)
    end = _next_armor_line(data, _END, 0)
    if end < 0:
        raise BadSignatureError("signature block is missing or unterminated", source=source)
    if not _SPACE.fullmatch(data, end + len(_END)):
        raise BadSignatureError("text after the signature block", source=source)


def _next_armor_line(data: bytes, marker: bytes, start: int) -> int:
    """Where the first line from ``start`` on that is exactly ``marker`` begins, or -1."""
    while (found := data.find(marker, start)) >= 0:
        if _armor_line_at(data, marker, found):
            return found
        start = found + 1
    return -1


def _armor_line_at(data: bytes, marker: bytes, offset: int) -> bool:
    """True if the line at ``offset`` is ``marker`` alone (a CR before its LF allowed)."""
    if offset > 0 and data[offset - 1 : offset] != b"\n":
        return False
    if not data.startswith(marker, offset):
        return False
    rest = data[offset + len(marker) : offset + len(marker) + 2]
    return rest in (b"", b"\r") or rest.startswith((b"\n", b"\r\n"))


def _run_gpg(data: bytes, keyring: Keyring) -> tuple[bytes, Status, int]:
    """Let gpg check ``data`` in a home that holds nothing but ``keyring``.

    gpg writes the verified text to a file in that home, read back once: the
    payload is held in one copy, not as a list of pieces and their join.
    """
    with throwaway_home() as home:
        ring = home / "trusted.gpg"
        ring.write_bytes(keyring.binary)
        out = home / "payload"
        handle = gpg_for(home, keyring=ring)
        handle.buffer_size = _GPG_BUFFER
        result = handle.decrypt(data, output=str(out))
        payload = out.read_bytes() if out.is_file() else b""
        return payload, status_lines(result), int(result.returncode)


def _judge(statuses: Status, returncode: int, keyring: Keyring, source: str) -> str:
    """Turn gpg's status lines into the signer's primary fingerprint, or raise."""
    keywords = {keyword for keyword, _ in statuses}
    if "BADSIG" in keywords:
        raise TamperedPayloadError("signed text was changed after signing (BADSIG)", source=source)
    if keywords & _EXPIRED:
        found = ", ".join(sorted(keywords & _EXPIRED))
        raise ExpiredKeyError(f"signing key or signature has expired ({found})", source=source)
    if "REVKEYSIG" in keywords:
        raise BadSignatureError("signed by a revoked key (REVKEYSIG)", source=source)
    for keyword, args in statuses:
        if keyword == "NO_PUBKEY" or (keyword == "ERRSIG" and args[5:6] == [_ERRSIG_NO_PUBKEY]):
            signer = args[6] if keyword == "ERRSIG" and len(args) > 6 else args[0]
            raise UnknownKeyError(
                f"signed by key {signer}, which is not in the keyring", source=source
            )
    valid = [args for keyword, args in statuses if keyword == "VALIDSIG"]
    goods = sum(1 for keyword, _ in statuses if keyword == "GOODSIG")
    if returncode != 0 or "ERRSIG" in keywords or not valid or goods != len(valid):
        seen = ", ".join(sorted(keywords)) or "no status"
        raise BadSignatureError(
            f"no valid signature (gpg exit {returncode}: {seen})", source=source
        )
    # VALIDSIG's tenth field is the primary key's fingerprint when a subkey signed.
    primaries = [(args[9] if len(args) >= 10 else args[0]).upper() for args in valid]
    for primary in primaries:
        if primary not in keyring.fingerprints:
            raise UnknownKeyError(
                f"signed by {primary}, which is not a primary key of the keyring", source=source
            )
    return primaries[0]
