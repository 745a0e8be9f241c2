"""The error tree shared by every part of bootsync.

Errors carry their data as attributes and a message that names what failed, so
that a log event or a CLI message can be built from them without re-parsing.
Retry decisions are made in one place, :func:`is_retryable`.
"""

from __future__ import annotations


class BootsyncError(Exception):
    """Base of every error bootsync raises on purpose."""


# --- signatures ---------------------------------------------------------------


class SignatureError(BootsyncError):
    """A signed document could not be trusted."""

    reason = "signature"

    def __init__(self, message: str, *, source: str = "") -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class NoSignatureError(SignatureError):
    """The document is not clearsigned, and the caller did not allow unsigned input."""

    reason = "no_signature"


class BadSignatureError(SignatureError):
    """The signature itself is damaged or could not be checked."""

    reason = "bad_signature"


class TamperedPayloadError(SignatureError):
    """The signature is well formed but does not match the signed text (BADSIG)."""

    reason = "tampered_payload"


class UnknownKeyError(SignatureError):
    """The document was signed by a key that is not in the keyring."""

    reason = "unknown_key"


class ExpiredKeyError(SignatureError):
    """The signing key (or the signature) has expired."""

    reason = "expired_key"


class KeyringError(SignatureError):
    """The keyring is missing, unreadable, or holds no public key."""

    reason = "keyring"


# --- upstream transport -----------------------------------------------------------


class UpstreamError(BootsyncError):
    """Talking to an upstream server failed. Subclasses say whether a retry may help."""

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = url
        super().__init__(f"{url}: {message}" if url else message)


class ConnectError(UpstreamError):
    """The server could not be reached (refused, reset, DNS failure)."""


class StallError(UpstreamError):
    """No bytes arrived for longer than the stall timeout."""


class TruncatedBodyError(UpstreamError):
    """The connection ended before the expected number of bytes arrived."""


class TooSlowError(UpstreamError):
    """Bytes arrived slower than the minimum rate over a whole window: not retried.

    A server that drips a byte a second never stalls, so only a rate check ends
    it (the slow-retrieval attack). ``rate`` is what arrived over the last
    ``window_s`` seconds, in bytes per second.
    """

    reason = "too_slow"

    def __init__(
        self, *, url: str, rate: float, min_rate: int, window_s: float, received: int
    ) -> None:
        self.rate = rate
        self.min_rate = min_rate
        self.window_s = window_s
        self.received = received
        super().__init__(
            f"too slow: {rate:.0f} bytes/s over the last {window_s:g} s, below the "
            f"minimum of {min_rate} bytes/s ({received} bytes received)",
            url=url,
        )


class DeadlineExceededError(UpstreamError):
    """A file took longer to transfer than its size allows at the minimum rate: not retried.

    ``deadline_s`` is the transfer time (over every attempt) the file was given;
    ``size`` is None for a document of unknown length.
    """

    reason = "deadline_exceeded"

    def __init__(self, *, url: str, deadline_s: float, received: int, size: int | None) -> None:
        self.deadline_s = deadline_s
        self.received = received
        self.size = size
        of = f" of {size}" if size is not None else ""
        super().__init__(
            f"deadline exceeded: {received}{of} bytes received in {deadline_s:.1f} s "
            "of transfer, the most its size allows at the minimum rate",
            url=url,
        )


class MetadataTooLargeError(UpstreamError):
    """A metadata document is larger than the configured maximum: refused unread, not retried."""

    reason = "metadata_too_large"

    def __init__(self, *, url: str, limit: int, actual: int) -> None:
        self.limit = limit
        self.actual = actual
        super().__init__(
            f"metadata too large: {actual} bytes or more, the limit is {limit} bytes "
            "(max_metadata_bytes)",
            url=url,
        )


class HTTPStatusError(UpstreamError):
    """The server answered with a status we did not ask for."""

    def __init__(self, status: int, *, url: str = "", retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}", url=url)


# --- integrity -------------------------------------------------------------------


class IntegrityError(BootsyncError):
    """Downloaded bytes are not the bytes the signed metadata promised."""

    reason = "integrity"

    def __init__(
        self, message: str, *, url: str = "", expected: object = None, actual: object = None
    ) -> None:
        self.url = url
        self.expected = expected
        self.actual = actual
        super().__init__(f"{url}: {message}" if url else message)


class DigestMismatchError(IntegrityError):
    """The sha256 of the received bytes differs from the expected one."""

    reason = "sha256_mismatch"

    def __init__(self, *, url: str, expected: str, actual: str) -> None:
        super().__init__(
            f"sha256 mismatch: expected {expected}, got {actual}",
            url=url,
            expected=expected,
            actual=actual,
        )


class SizeMismatchError(IntegrityError):
    """The number of received bytes differs from the expected size."""

    reason = "size_mismatch"

    def __init__(self, *, url: str, expected: int, actual: int) -> None:
        super().__init__(
            f"size mismatch: expected {expected} bytes, got {actual}",
            url=url,
            expected=expected,
            actual=actual,
        )


class OversizeError(IntegrityError):
    """The server sent (or announced) more bytes than the metadata allows."""

    reason = "oversize"

    def __init__(self, *, url: str, expected: int, actual: int) -> None:
        super().__init__(
            f"refused: server sends {actual} bytes, metadata allows {expected}",
            url=url,
            expected=expected,
            actual=actual,
        )


# --- local storage ---------------------------------------------------------------


class StoreError(BootsyncError):
    """The local store could not hold a file (disk full, permissions)."""


class InsufficientSpaceError(StoreError):
    """Not enough free space for the planned downloads."""

    def __init__(self, *, path: str, needed: int, free: int) -> None:
        self.path = path
        self.needed = needed
        self.free = free
        super().__init__(f"{path}: not enough free space: need {needed} bytes, {free} bytes free")


class ConfigError(BootsyncError):
    """A configuration file or value is invalid; the message names the key."""


def error_text(exc: BaseException) -> str:
    """``str(exc)``, or the class name when that is empty (``TimeoutError()``, ``KeyError()``).

    Every log event's ``error`` field and every stored error message is built
    with this, so that none is ever blank.
    """
    return str(exc) or type(exc).__name__


_RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """Tell whether repeating the request that raised ``exc`` may succeed.

    Connect errors, stalls, truncated bodies, timeouts, 5xx and 429 are worth
    another try; 4xx, integrity and signature failures and a full disk are not.
    """
    if isinstance(exc, HTTPStatusError):
        return exc.status in _RETRYABLE_STATUSES or exc.status >= 500
    if isinstance(exc, ConnectError | StallError | TruncatedBodyError):
        return True
    return isinstance(exc, TimeoutError)
