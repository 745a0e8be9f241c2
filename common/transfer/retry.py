"""The one retry loop of bootsync's HTTP calls: exponential backoff, full jitter.

Metadata documents (:func:`common.transfer.fetch.fetch_document`), the rack's
stream documents (:class:`rack.region_client.RegionClient`) and blob
downloads (:class:`common.transfer.download.Downloader`) all retry through
:func:`retrying`. Whether an error is worth another try is decided by
:func:`common.errors.is_retryable` alone; a :class:`RetryPolicy` only says how
many tries and how long to wait between them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from common.errors import (
    ConnectError,
    HTTPStatusError,
    UpstreamError,
    error_text,
    is_retryable,
)
from common.transfer.http import backoff_delay

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    ``retries`` is the number of tries after the first. ``retry_connect=False``
    suits an attempt that already went round every address it knows (the
    rack's region URLs): its ConnectError means all of them are down, and
    whoever called reconnects on its own schedule.
    """

    retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_connect: bool = True

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must not be negative, got {self.retries}")

    def delay(self, attempt: int, exc: UpstreamError) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based); Retry-After counts."""
        retry_after = exc.retry_after if isinstance(exc, HTTPStatusError) else None
        return backoff_delay(
            attempt, base=self.backoff_base, cap=self.backoff_max, retry_after=retry_after
        )

    def gives_up(self, attempt: int, exc: UpstreamError) -> bool:
        """True when try number ``attempt`` failing with ``exc`` must not be repeated."""
        if attempt > self.retries or not is_retryable(exc):
            return True
        return isinstance(exc, ConnectError) and not self.retry_connect


async def retrying(
    attempt: Callable[[], Awaitable[T]], policy: RetryPolicy, *, log: Any, event: str
) -> T:
    """Await ``attempt()`` until it succeeds or ``policy`` gives up; return its result.

    Only UpstreamError is retried (an attempt turns aiohttp's exceptions into
    those, see :func:`common.transfer.http.translate_error`); the last one is
    raised as it is. Each retry is logged as ``event`` on ``log`` with the
    attempt number, the delay and the error.
    """
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt()
        except UpstreamError as exc:
            if policy.gives_up(tries, exc):
                raise
            delay = policy.delay(tries, exc)
            log.warning(event, attempt=tries, delay_s=round(delay, 3), error=error_text(exc))
            await asyncio.sleep(delay)
