"""Fetch a stream's metadata documents: bounded in size, retried."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from common.errors import HTTPStatusError
from common.ops.logging import get_logger
from common.transfer.http import parse_retry_after, request_bounded
from common.transfer.retry import RetryPolicy, retrying

log = get_logger("fetch")

MAX_METADATA_BYTES = 64 << 20  # the real v3 products file is a few MiB
METADATA_RETRIES = RetryPolicy(retries=3, backoff_base=0.5, backoff_max=30.0)
_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=15, sock_read=60)


async def fetch_document(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int = MAX_METADATA_BYTES,
    policy: RetryPolicy = METADATA_RETRIES,
) -> bytes:
    """GET ``url`` and return its body (at most ``max_bytes``).

    Retryable failures (connect errors, stalls, bodies cut off, 5xx, 429) are
    retried as ``policy`` says; the last error is raised as an UpstreamError
    subclass. Any status but 200 raises HTTPStatusError, a body over
    ``max_bytes`` OversizeError.
    """

    async def attempt() -> bytes:
        answer = await request_bounded(session, "GET", url, max_bytes=max_bytes, limits=_TIMEOUT)
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
