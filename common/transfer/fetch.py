"""Fetch a stream's metadata documents: bounded in size, retried, then verified."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import aiohttp

from common.errors import (
    ConnectError,
    HTTPStatusError,
    OversizeError,
    SignatureError,
    UpstreamError,
    is_retryable,
)
from common.ops.logging import get_logger
from common.transfer.http import backoff_delay, parse_retry_after
from common.trust.keyrings import Keyring
from common.trust.signing import VerifiedDocument, averify_clearsigned

log = get_logger("fetch")

CLEARSIGN_HEADER = b"-----BEGIN PGP SIGNED MESSAGE-----"
MAX_METADATA_BYTES = 64 << 20  # the real v3 products file is a few MiB
_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=15, sock_read=60)


async def fetch_document(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int = MAX_METADATA_BYTES,
    retries: int = 3,
    backoff_base: float = 0.5,
) -> bytes:
    """GET ``url`` and return its body (at most ``max_bytes``).

    Retryable failures (connect errors, timeouts, 5xx, 429) are retried with
    exponential backoff and jitter; the last error is raised as an
    :class:`UpstreamError` subclass. A body over ``max_bytes`` raises OversizeError.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _get(session, url, max_bytes)
        except (UpstreamError, TimeoutError) as exc:
            if attempt > retries or not is_retryable(exc):
                if isinstance(exc, TimeoutError):
                    raise UpstreamError("timed out", url=url) from exc
                raise
            delay = backoff_delay(
                attempt, base=backoff_base, cap=30.0, retry_after=getattr(exc, "retry_after", None)
            )
            log.warning(
                "metadata_fetch_retrying",
                url=url,
                attempt=attempt,
                delay_s=round(delay, 2),
                error=str(exc),
            )
            await asyncio.sleep(delay)


async def _get(session: aiohttp.ClientSession, url: str, max_bytes: int) -> bytes:
    try:
        async with session.get(url, timeout=_TIMEOUT) as resp:
            if resp.status != 200:
                raise HTTPStatusError(
                    resp.status,
                    url=url,
                    retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                )
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise OversizeError(url=url, expected=max_bytes, actual=resp.content_length)
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > max_bytes:
                    raise OversizeError(url=url, expected=max_bytes, actual=len(body))
            return bytes(body)
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamError(f"body cut short: {exc}", url=url) from exc
    except aiohttp.ClientConnectionError as exc:
        raise ConnectError(str(exc) or type(exc).__name__, url=url) from exc


async def fetch_verified(
    session: aiohttp.ClientSession,
    url: str,
    keyring: Keyring | None,
) -> VerifiedDocument:
    """Fetch a metadata document and pass it through the signature gate.

    With ``keyring=None`` the caller explicitly accepts unsigned JSON (and only
    that: a clearsigned document cannot be trusted without a keyring).
    """
    data = await fetch_document(session, url)
    if keyring is None:
        if data.lstrip().startswith(CLEARSIGN_HEADER):
            raise SignatureError(
                "clearsigned document, but no keyring to verify it with", source=url
            )
        return VerifiedDocument(payload=data, fingerprint=None, signed=False)
    return await averify_clearsigned(data, keyring, source=url)  # logs signature_verified


def join_url(base: str, path: str) -> str:
    """``path`` (mirror-relative, unquoted) under the mirror root ``base``.

    Not ``urljoin``: a first segment holding a colon would be taken for a scheme.
    """
    return base.rstrip("/") + "/" + quote(path, safe="/:@!$&'()*+,;=~-._")
