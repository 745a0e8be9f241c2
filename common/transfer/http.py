"""HTTP transport: the session, one resumable GET, one bounded request, headers, backoff.

:func:`get_into` streams a file of known size into a sink (resuming with
Range); :func:`request_bounded` reads a small body whole (metadata, API
replies). aiohttp's exceptions stop here: both turn them into the
:mod:`common.errors` types that :func:`common.errors.is_retryable` understands,
through the one mapping :func:`translate_error`. Retrying is
:func:`common.transfer.retry.retrying`'s job; how slow a transfer may be (a
minimum rate, a deadline per file) is a :class:`common.transfer.limits.Pace`'s,
which both take.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import aiohttp
from multidict import CIMultiDictProxy

from common.errors import (
    ConnectError,
    HTTPStatusError,
    OversizeError,
    SizeMismatchError,
    StallError,
    TruncatedBodyError,
    UpstreamError,
)
from common.transfer.limits import Pace, TransferLimits

# A bigger buffer than aiohttp's 64 KiB default: fewer pause/resume cycles of the
# transport per file (measured in bench/RESULTS.md).
READ_BUFSIZE = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_SECONDS = re.compile(r"\d+(\.\d+)?")
_UNLIMITED = TransferLimits(min_rate=0)


def make_session(*, user_agent: str, limit: int = 64) -> aiohttp.ClientSession:
    """A ClientSession for downloads; call from a running event loop.

    ``trust_env=True`` makes http_proxy / https_proxy / no_proxy (and ~/.netrc)
    apply. Bodies are not decompressed, so the bytes hashed are the bytes
    served. Timeouts are set per request by the downloader.
    """
    return aiohttp.ClientSession(
        headers={"User-Agent": user_agent},
        trust_env=True,
        auto_decompress=False,
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=None),
    )


class ByteSink(Protocol):
    """Where :func:`get_into` puts a body: appends, flushes, or starts over."""

    size: int

    async def write(self, data: bytes) -> None: ...

    async def flush(self) -> None: ...

    async def reset(self) -> None: ...


async def get_into(
    session: aiohttp.ClientSession,
    url: str,
    sink: ByteSink,
    *,
    size: int,
    limits: aiohttp.ClientTimeout,
    on_bytes: Callable[[int], None],
    pace: Pace | None = None,
    read_bufsize: int = READ_BUFSIZE,
) -> None:
    """GET ``url`` into ``sink`` until it holds ``size`` bytes: one attempt.

    ``read_bufsize`` bounds what the connection buffers and reads per call.

    A non-empty sink is resumed with ``Range: bytes=<sink.size>-``; a 200
    answer, or a 206/416 whose range does not fit, restarts from zero.
    Raises HTTPStatusError, OversizeError / SizeMismatchError (the server
    announces or sends the wrong length), TruncatedBodyError, StallError,
    ConnectError or UpstreamError; under a ``pace`` (one per file, over its
    attempts) also TooSlowError and DeadlineExceededError. Unless cancelled,
    the sink holds every byte received when this returns or raises.
    """
    received = 0
    watch = (pace or Pace(_UNLIMITED, url=url)).attempt()

    def count(nbytes: int) -> None:
        nonlocal received
        received += nbytes
        watch.add(nbytes)
        on_bytes(nbytes)

    try:
        async with watch:
            await _get(
                session, url, sink, size=size, limits=limits, count=count, bufsize=read_bufsize
            )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        await sink.flush()
        raise translate_error(exc, url=url, body_started=received > 0) from exc
    except UpstreamError:
        await sink.flush()
        raise


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    sink: ByteSink,
    *,
    size: int,
    limits: aiohttp.ClientTimeout,
    count: Callable[[int], None],
    bufsize: int,
) -> None:
    use_range = sink.size > 0
    while True:
        headers = {"Accept-Encoding": "identity"}
        if use_range:
            headers["Range"] = f"bytes={sink.size}-"
        async with session.get(url, headers=headers, timeout=limits, read_bufsize=bufsize) as resp:
            if resp.status == 200:
                if sink.size:
                    await sink.reset()  # the server ignored our Range: start over
            elif not (use_range and _range_fits(resp.status, resp.headers, sink.size, size)):
                if use_range and resp.status in (206, 416):
                    await sink.reset()  # a range the server cannot serve: start over
                    use_range = False
                    continue
                raise HTTPStatusError(
                    resp.status,
                    url=url,
                    retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                )
            await stream_body(url, resp, sink, size, count, bufsize=bufsize)
            return


def read_more_per_call(resp: aiohttp.ClientResponse, size: int = READ_BUFSIZE) -> None:
    """Let this response's connection take up to ``size`` per ``recv`` (asyncio: 256 KiB).

    Set on the connection's own transport only (an asyncio selector transport;
    others, uvloop's, are left alone): fewer, larger reads on the event-loop
    thread, which receives every downloaded byte (measured in bench/RESULTS.md).
    A body aiohttp already holds whole has given its connection back: nothing to do.
    """
    connection = resp.connection
    transport = connection.transport if connection is not None else None
    if transport is not None and "max_size" in dir(transport):
        transport.max_size = size  # type: ignore[attr-defined]


async def stream_body(
    url: str,
    resp: aiohttp.ClientResponse,
    sink: ByteSink,
    size: int,
    count: Callable[[int], None],
    *,
    bufsize: int = READ_BUFSIZE,
) -> None:
    """Move ``resp``'s body into ``sink`` until it holds ``size`` bytes, checking lengths."""
    read_more_per_call(resp, bufsize)
    remaining = size - sink.size
    announced = resp.content_length
    if announced is not None and announced > remaining:
        raise OversizeError(url=url, expected=size, actual=sink.size + announced)
    if announced is not None and announced < remaining:
        raise SizeMismatchError(url=url, expected=size, actual=sink.size + announced)
    async for chunk, _end_of_http_chunk in resp.content.iter_chunks():
        if len(chunk) > remaining:
            # Stop reading: whatever the server has left is not what the metadata promised.
            raise OversizeError(url=url, expected=size, actual=sink.size + len(chunk))
        remaining -= len(chunk)
        await sink.write(chunk)
        count(len(chunk))
    await sink.flush()
    if remaining:
        raise TruncatedBodyError(f"body ended {remaining} bytes short", url=url)


@dataclass(frozen=True)
class Answer:
    """A response read whole: its status, headers and (bounded) body."""

    url: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


async def request_bounded(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    max_bytes: int,
    limits: aiohttp.ClientTimeout,
    headers: Mapping[str, str] | None = None,
    json_body: object = None,
    pace: Pace | None = None,
) -> Answer:
    """Send one request and read its body whole, whatever the status: one attempt.

    A body (announced or sent) over ``max_bytes`` raises OversizeError without
    reading on. Failures raise what :func:`translate_error` makes of them: a
    body cut off is a TruncatedBodyError, as it is for :func:`get_into`. Under
    a ``pace`` also TooSlowError and DeadlineExceededError.
    """
    body = bytearray()
    try:
        async with (
            (pace or Pace(_UNLIMITED, url=url)).attempt() as watch,
            session.request(method, url, headers=headers, json=json_body, timeout=limits) as resp,
        ):
            announced = resp.content_length
            if announced is not None and announced > max_bytes:
                raise OversizeError(url=url, expected=max_bytes, actual=announced)
            if announced is not None:
                watch.expect(announced)
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                watch.add(len(chunk))
                if len(body) > max_bytes:
                    raise OversizeError(url=url, expected=max_bytes, actual=len(body))
            return Answer(url=url, status=resp.status, headers=resp.headers, body=bytes(body))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise translate_error(exc, url=url, body_started=bool(body)) from exc


def _range_fits(status: int, headers: Mapping[str, str], offset: int, size: int) -> bool:
    """True for a 206 whose Content-Range starts at ``offset`` and ends the file."""
    if status != 206:
        return False
    parsed = parse_content_range(headers.get("Content-Range"))
    return (
        parsed is not None
        and parsed[0] == offset
        and parsed[1] == size - 1
        and parsed[2] in (None, size)
    )


def translate_error(exc: BaseException, *, url: str, body_started: bool) -> UpstreamError:
    """Map an aiohttp (or socket/timeout) exception to a common.errors type.

    ``body_started`` tells whether bytes of the body had arrived: a connection
    lost after that point is a truncated body rather than a connect failure.
    """
    kind: type[UpstreamError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind, what = ConnectError, "connect timed out"
    elif isinstance(exc, aiohttp.SocketTimeoutError | TimeoutError):
        kind, what = StallError, "no bytes received within the stall timeout"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        kind, what = TruncatedBodyError, "body ended early"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind, what = ConnectError, "cannot connect"
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | OSError):
        kind = TruncatedBodyError if body_started else ConnectError
        what = "connection lost"
    else:
        # Redirect loops, invalid URLs, protocol violations: repeating will not help.
        kind, what = UpstreamError, "request failed"
    return kind(f"{what}: {exc!r}", url=url)


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """Parse ``bytes first-last/total`` into (first, last, total or None); None if invalid."""
    if value is None:
        return None
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    if last < first or (total is not None and last >= total):
        return None
    return first, last, total


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)  # RFC 9110 says whole seconds; a fraction is harmless
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(
    attempt: int, *, base: float, cap: float, retry_after: float | None = None
) -> float:
    """Delay before retry number ``attempt`` (1-based): full jitter, capped.

    A server's Retry-After is honoured up to ``cap``.
    """
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
