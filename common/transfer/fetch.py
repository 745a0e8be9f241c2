"""Fetch a stream's metadata documents: bounded in size, paced, retried."""

from __future__ import annotations

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


async def fetch_document(
    session: aiohttp.ClientSession,
    url: str,
    *,
    limits: TransferLimits | None = None,
    policy: RetryPolicy = METADATA_RETRIES,
) -> bytes:
    """GET ``url`` and return its body (at most ``limits.max_metadata_bytes``).

    Retryable failures (connect errors, stalls, bodies cut off, 5xx, 429) are
    retried as ``policy`` says; the last error is raised as an UpstreamError
    subclass. Any status but 200 raises HTTPStatusError, a body over the
    maximum MetadataTooLargeError, a server slower than ``limits.min_rate``
    TooSlowError or DeadlineExceededError (neither is retried).
    """
    limits = limits or TransferLimits()
    pace = Pace(limits, url=url)

    async def attempt() -> bytes:
        try:
            answer = await request_bounded(
                session,
                "GET",
                url,
                max_bytes=limits.max_metadata_bytes,
                limits=_TIMEOUT,
                pace=pace,
            )
        except OversizeError as exc:
            raise MetadataTooLargeError(
                url=url,
                limit=limits.max_metadata_bytes,
                actual=exc.actual if isinstance(exc.actual, int) else 0,
            ) from exc
        if answer.status != 200:
            raise HTTPStatusError(
                answer.status,
                url=url,
                retry_after=parse_retry_after(answer.headers.get("Retry-After")),
            )
        return answer.body

    return await retrying(attempt, policy, log=log.bind(url=url), event="metadata_fetch_retrying")


def join_url(base: str, path: str) -> str:
    """``path`` (mirror-relative, unquoted) under the mirror root ``base``.

    Not ``urljoin``: a first segment holding a colon would be taken for a scheme.
    """
    return base.rstrip("/") + "/" + quote(path, safe="/:@!$&'()*+,;=~-._")
