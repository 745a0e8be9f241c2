"""Fetch a stream's metadata documents: bounded in size, paced, retried, conditional.

With a :class:`DocumentCache`, a document fetched before is asked for again with
``If-None-Match`` / ``If-Modified-Since`` (the ETag and Last-Modified it came
with); a ``304 Not Modified`` answer reuses the bytes kept, so an upstream with
nothing new costs a few hundred bytes per document instead of the document.
The bytes kept are the document as served (signed): callers verify them again,
and keep a document only once it verified (a corrupted answer, kept, would
otherwise be reused for as long as the upstream answers 304).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import aiohttp

from common.errors import HTTPStatusError, MetadataTooLargeError, OversizeError
from common.ops.logging import get_logger
from common.transfer.http import parse_retry_after, request_bounded
from common.transfer.limits import DEFAULT_MAX_METADATA_BYTES, Pace, TransferLimits
from common.transfer.retry import RetryPolicy, retrying

log = get_logger("fetch")

MAX_METADATA_BYTES = DEFAULT_MAX_METADATA_BYTES
METADATA_RETRIES = RetryPolicy(retries=3, backoff_base=0.5, backoff_max=30.0)
# No total: how long a document may take is the Pace's call (its size at the minimum rate).
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)
NOT_MODIFIED = 304


@dataclass(frozen=True)
class CachedDocument:
    """A document as last served: its bytes and the validators that came with them."""

    body: bytes
    etag: str | None = None
    last_modified: str | None = None

    @property
    def validated(self) -> bool:
        """True when the server gave a validator to ask with next time."""
        return self.etag is not None or self.last_modified is not None

    def conditional_headers(self) -> dict[str, str]:
        """``If-None-Match`` and/or ``If-Modified-Since`` for these validators."""
        headers = {}
        if self.etag is not None:
            headers["If-None-Match"] = self.etag
        if self.last_modified is not None:
            headers["If-Modified-Since"] = self.last_modified
        return headers


class DocumentCache(Protocol):
    """Where fetched documents are kept between runs, by URL (the region's database, a mirror's state)."""

    async def get(self, url: str) -> CachedDocument | None: ...

    async def put(self, url: str, document: CachedDocument) -> None: ...


async def fetch_document(
    session: aiohttp.ClientSession,
    url: str,
    *,
    limits: TransferLimits | None = None,
    policy: RetryPolicy = METADATA_RETRIES,
) -> bytes:
    """GET ``url`` and return its body (at most ``limits.max_metadata_bytes``).

    Raises as :func:`fetch_conditional` does.
    """
    document = await fetch_conditional(session, url, cached=None, limits=limits, policy=policy)
    return document.body


async def fetch_conditional(
    session: aiohttp.ClientSession,
    url: str,
    *,
    cached: CachedDocument | None,
    limits: TransferLimits | None = None,
    policy: RetryPolicy = METADATA_RETRIES,
) -> CachedDocument:
    """GET ``url`` (conditionally when ``cached``): the body and the validators it came with.

    A ``304 Not Modified`` answer returns ``cached`` itself (``is`` tells a reuse
    from a fresh body). The body is at most ``limits.max_metadata_bytes``.

    Retryable failures (connect errors, stalls, bodies cut off, 5xx, 429) are
    retried as ``policy`` says; the last error is raised as an UpstreamError
    subclass. Any status but 200 raises HTTPStatusError, a body over the
    maximum MetadataTooLargeError, a server slower than ``limits.min_rate``
    TooSlowError or DeadlineExceededError (neither is retried).
    """
    limits = limits or TransferLimits()
    pace = Pace(limits, url=url)
    headers = cached.conditional_headers() if cached is not None else None

    async def attempt() -> CachedDocument:
        try:
            answer = await request_bounded(
                session,
                "GET",
                url,
                max_bytes=limits.max_metadata_bytes,
                limits=_TIMEOUT,
                headers=headers,
                pace=pace,
            )
        except OversizeError as exc:
            raise MetadataTooLargeError(
                url=url,
                limit=limits.max_metadata_bytes,
                actual=exc.actual if isinstance(exc.actual, int) else 0,
            ) from exc
        if answer.status == NOT_MODIFIED and cached is not None:
            log.debug("metadata_not_modified", url=url, reused_bytes=len(cached.body))
            return cached
        if answer.status != 200:
            raise HTTPStatusError(
                answer.status,
                url=url,
                retry_after=parse_retry_after(answer.headers.get("Retry-After")),
            )
        return CachedDocument(
            body=answer.body,
            etag=answer.headers.get("ETag"),
            last_modified=answer.headers.get("Last-Modified"),
        )

    return await retrying(attempt, policy, log=log.bind(url=url), event="metadata_fetch_retrying")


def join_url(base: str, path: str) -> str:
    """``path`` (mirror-relative, unquoted) under the mirror root ``base``.

    Not ``urljoin``: a first segment holding a colon would be taken for a scheme.
    """
    return base.rstrip("/") + "/" + quote(path, safe="/:@!$&'()*+,;=~-._")
