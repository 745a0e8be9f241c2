"""Slow upstreams against a real dripping HTTP server: a minimum rate, a deadline, a size cap.

The windows are tiny (half a second or one second) so that each test ends in
about that long; no test asserts how long anything took, only that it ended
with the named reason (the pytest timeout catches a hang).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import MutableMapping
from typing import Any

import aiohttp
import pytest

from common.errors import (
    DeadlineExceededError,
    MetadataTooLargeError,
    StallError,
    TooSlowError,
    error_text,
)
from common.ops.logging import get_logger
from common.storage.blobstore import BlobStore
from common.transfer.download import Downloader, DownloadRequest
from common.transfer.fetch import fetch_document
from common.transfer.limits import TransferLimits
from common.transfer.retry import RetryPolicy, retrying
from tests.fakes.upstream import FakeUpstream

Events = list[MutableMapping[str, Any]]

# 64 KiB/s over half a second: a dripping server fails after one window.
QUICK = TransferLimits(min_rate=64 << 10, rate_window_s=0.5)
FAST_RETRIES = RetryPolicy(retries=3, backoff_base=0.01, backoff_max=0.02)


def serve(upstream: FakeUpstream, path: str, size: int) -> DownloadRequest:
    """Serve ``size`` reproducible bytes at ``path``; a request for them."""
    data = random.Random(size).randbytes(size)
    upstream.add_file(path, data)
    return DownloadRequest(
        url=upstream.url(path), sha256=hashlib.sha256(data).hexdigest(), size=size
    )


def downloader(
    session: aiohttp.ClientSession, store: BlobStore, limits: TransferLimits, **kw: Any
) -> Downloader:
    """A downloader with test-sized backoff."""
    return Downloader(session, store, backoff_base=0.01, backoff_max=0.02, limits=limits, **kw)


async def test_a_dripping_file_fails_as_too_slow_instead_of_hanging(
    fake_upstream: FakeUpstream,
    session: aiohttp.ClientSession,
    store: BlobStore,
    log_events: Events,
) -> None:
    """A server sending a few bytes at a time ends the download with TooSlowError, not retried."""
    req = serve(fake_upstream, "/squashfs", 256 << 10)
    fake_upstream.drip("/squashfs", nbytes=512, every_s=0.05)
    outcome = await downloader(session, store, QUICK).fetch(req)
    assert not outcome.ok
    assert isinstance(outcome.error, TooSlowError)
    assert outcome.error.min_rate == 64 << 10
    assert outcome.error.window_s == 0.5
    assert outcome.error.rate < 64 << 10
    assert "too slow" in str(outcome.error)
    assert len(fake_upstream.requests) == 1  # not retried
    [failed] = [e for e in log_events if e["event"] == "download_failed"]
    assert failed["reason"] == "too_slow"
    assert "too slow" in failed["error"]
    assert not await store.has(req.sha256, req.size)


async def test_a_dripping_metadata_document_fails_as_too_slow(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession, log_events: Events
) -> None:
    """A products document dripped out fails with TooSlowError after one try, unretried."""
    fake_upstream.add_file("/streams/v1/p.sjson", b"x" * (128 << 10))
    fake_upstream.drip("/streams/v1/p.sjson", nbytes=256, every_s=0.05)
    with pytest.raises(TooSlowError, match="too slow") as failed:
        await fetch_document(
            session, fake_upstream.url("/streams/v1/p.sjson"), limits=QUICK, policy=FAST_RETRIES
        )
    assert failed.value.reason == "too_slow"
    assert failed.value.url.endswith("/streams/v1/p.sjson")
    assert len(fake_upstream.requests) == 1
    assert not [e for e in log_events if e["event"] == "metadata_fetch_retrying"]


async def test_a_silent_server_fails_at_the_first_window_not_at_the_stall_timeout(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
) -> None:
    """Headers and then nothing: TooSlowError after one window, long before a 30 s stall."""
    req = serve(fake_upstream, "/silent", 64 << 10)
    fake_upstream.stall("/silent", after_bytes=0, seconds=60)
    outcome = await downloader(session, store, QUICK, stall_timeout=30.0).fetch(req)
    assert isinstance(outcome.error, TooSlowError)
    assert outcome.error.rate == 0
    assert outcome.error.received == 0


async def test_a_transfer_that_completes_is_never_judged_slow(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
) -> None:
    """A small file dripped out within one window arrives, and a full-speed one too."""
    small = serve(fake_upstream, "/small", 2 << 10)
    fake_upstream.drip("/small", nbytes=512, every_s=0.02)
    big = serve(fake_upstream, "/big", 4 << 20)
    outcomes = await downloader(session, store, QUICK).fetch_all([small, big], concurrency=2)
    assert [o.ok for o in outcomes] == [True, True]
    assert await store.has(small.sha256, small.size)
    assert await store.has(big.sha256, big.size)


async def test_attempts_that_each_stay_under_a_window_still_meet_the_file_s_deadline(
    fake_upstream: FakeUpstream,
    session: aiohttp.ClientSession,
    store: BlobStore,
    log_events: Events,
) -> None:
    """A server that waits, sends one byte and resets every time fails at its deadline."""
    req = serve(fake_upstream, "/kernel", 1 << 10)
    fake_upstream.stall("/kernel", after_bytes=0, seconds=0.3, times=1000)
    fake_upstream.reset("/kernel", after_bytes=1, times=1000)
    limits = TransferLimits(min_rate=64 << 10, rate_window_s=1.0)
    outcome = await downloader(session, store, limits, retries=50).fetch(req)
    assert isinstance(outcome.error, DeadlineExceededError)
    assert outcome.error.deadline_s == limits.deadline_s(req.size)
    assert outcome.error.size == req.size
    assert "deadline exceeded" in str(outcome.error)
    assert 1 < outcome.attempts < 50  # retried (each reset), then stopped by the deadline
    [failed] = [e for e in log_events if e["event"] == "download_failed"]
    assert failed["reason"] == "deadline_exceeded"


async def test_no_minimum_rate_lets_a_dripping_file_arrive(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
) -> None:
    """With min_rate 0 a slow file is waited for: the check can be switched off."""
    req = serve(fake_upstream, "/slow", 8 << 10)
    fake_upstream.drip("/slow", nbytes=1 << 10, every_s=0.1)
    limits = TransferLimits(min_rate=0, rate_window_s=0.1)
    outcome = await downloader(session, store, limits).fetch(req)
    assert outcome.ok, outcome.error


@pytest.mark.parametrize("announced", [True, False])
async def test_a_metadata_document_over_the_maximum_is_refused_with_its_reason(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession, announced: bool
) -> None:
    """A document larger than max_metadata_bytes fails as metadata_too_large, announced or not."""
    fake_upstream.add_file("/streams/v1/big.json", b" " * (200 << 10))
    if not announced:
        fake_upstream.wrong_length("/streams/v1/big.json", None)  # chunked: counted as it comes
    limits = TransferLimits(max_metadata_bytes=100 << 10)
    with pytest.raises(MetadataTooLargeError) as refused:
        await fetch_document(session, fake_upstream.url("/streams/v1/big.json"), limits=limits)
    assert refused.value.reason == "metadata_too_large"
    assert refused.value.limit == 100 << 10
    assert refused.value.actual > 100 << 10
    assert "max_metadata_bytes" in str(refused.value)
    assert len(fake_upstream.requests) == 1


async def test_a_retried_error_without_a_message_is_logged_by_its_class_name(
    log_events: Events,
) -> None:
    """The retry event's error text is never empty: an exception without one gives its class."""
    errors = [StallError(""), StallError("")]

    async def attempt() -> None:
        raise errors.pop()

    with pytest.raises(StallError):
        await retrying(
            attempt,
            RetryPolicy(retries=1, backoff_base=0.0),
            log=get_logger("test"),
            event="metadata_fetch_retrying",
        )
    [retry] = [e for e in log_events if e["event"] == "metadata_fetch_retrying"]
    assert retry["error"] == "StallError"
    assert error_text(TimeoutError()) == "TimeoutError"
    assert error_text(ValueError("bad")) == "bad"


def test_limits_refuse_impossible_values_and_scale_the_deadline_with_the_size() -> None:
    """A negative rate or an empty window is refused; the deadline grows with the size."""
    with pytest.raises(ValueError, match="min_rate"):
        TransferLimits(min_rate=-1)
    with pytest.raises(ValueError, match="rate_window_s"):
        TransferLimits(rate_window_s=0)
    with pytest.raises(ValueError, match="max_metadata_bytes"):
        TransferLimits(max_metadata_bytes=0)
    limits = TransferLimits(min_rate=4096, rate_window_s=60)
    assert limits.deadline_s(0) == 120
    assert limits.deadline_s(4096 * 100) == 220
    assert TransferLimits(min_rate=0).deadline_s(1 << 30) is None
