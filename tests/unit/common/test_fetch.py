"""Metadata fetches against a real HTTP upstream that cuts bodies off and fails."""

from __future__ import annotations

import random
from collections.abc import MutableMapping
from typing import Any

import aiohttp
import pytest

from common.errors import ConnectError, HTTPStatusError, TruncatedBodyError
from common.ops.logging import get_logger
from common.transfer.fetch import fetch_document
from common.transfer.retry import RetryPolicy, retrying
from tests.fakes.upstream import FakeUpstream

FAST = RetryPolicy(retries=2, backoff_base=0.01, backoff_max=0.02)
DOCUMENT = random.Random(7).randbytes(300 << 10)  # several reads' worth


async def test_a_metadata_body_cut_off_once_is_fetched_again_whole(
    fake_upstream: FakeUpstream,
    session: aiohttp.ClientSession,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """A products document whose body ends early is retried as a truncated body and returned whole."""
    fake_upstream.add_file("/streams/v1/p.sjson", DOCUMENT)
    fake_upstream.truncate("/streams/v1/p.sjson", at_bytes=100 << 10, times=1)
    body = await fetch_document(session, fake_upstream.url("/streams/v1/p.sjson"), policy=FAST)
    assert body == DOCUMENT
    assert len(fake_upstream.requests) == 2
    retries = [e for e in log_events if e["event"] == "metadata_fetch_retrying"]
    assert [e["attempt"] for e in retries] == [1]
    assert "body ended early" in retries[0]["error"]


async def test_a_body_cut_off_every_time_fails_as_a_truncated_body(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """When every try is cut off, the error after the last retry is a TruncatedBodyError."""
    fake_upstream.add_file("/i.json", DOCUMENT)
    fake_upstream.truncate("/i.json", at_bytes=10, times=10)
    with pytest.raises(TruncatedBodyError, match="body ended early"):
        await fetch_document(session, fake_upstream.url("/i.json"), policy=FAST)
    assert len(fake_upstream.requests) == FAST.retries + 1


async def test_a_404_is_not_retried_and_a_503_is(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A missing document fails at once; a 503 answered twice is fetched on the third try."""
    fake_upstream.add_file("/i.json", b"{}")
    fake_upstream.fail("/i.json", status=503, times=2, retry_after=0)
    with pytest.raises(HTTPStatusError) as missing:
        await fetch_document(session, fake_upstream.url("/nope.json"), policy=FAST)
    assert missing.value.status == 404
    assert await fetch_document(session, fake_upstream.url("/i.json"), policy=FAST) == b"{}"
    assert [r.path for r in fake_upstream.requests] == ["/nope.json"] + ["/i.json"] * 3


async def test_a_policy_may_leave_connect_failures_to_its_caller(
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """With retry_connect off a ConnectError ends the loop at once; other retryable errors do not."""
    errors = [TruncatedBodyError("cut", url="u"), ConnectError("refused", url="u")]
    tries: list[int] = []

    async def attempt() -> None:
        tries.append(len(tries))
        raise errors[len(tries) - 1]

    with pytest.raises(ConnectError):
        await retrying(
            attempt,
            RetryPolicy(retries=5, backoff_base=0.0, retry_connect=False),
            log=get_logger("test"),
            event="test_retrying",
        )
    assert len(tries) == 2
    assert [e["event"] for e in log_events] == ["test_retrying"]
