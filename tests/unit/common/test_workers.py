"""The bounded worker pool."""

from __future__ import annotations

import asyncio

import pytest

from common.transfer.workers import run_bounded


async def yield_times(n: int) -> None:
    """Give the loop to other tasks ``n`` times."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_results_come_back_in_input_order() -> None:
    """Items that finish in reverse order still give results in input order."""

    async def work(n: int) -> int:
        await yield_times(10 - n)
        return n * n

    assert await run_bounded(range(10), work, limit=4) == [n * n for n in range(10)]


async def test_no_more_than_limit_workers_run_at_once() -> None:
    """The number of items in progress never exceeds the limit, and reaches it."""
    running = 0
    peak = 0

    async def work(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await yield_times(3)
        running -= 1
        return n

    assert await run_bounded(range(20), work, limit=3) == list(range(20))
    assert peak == 3


async def test_an_exception_propagates_as_itself_and_cancels_the_rest() -> None:
    """A worker's error is re-raised unwrapped and the other workers are cancelled."""
    cancelled: list[int] = []
    never = asyncio.Event()

    async def work(n: int) -> int:
        if n == 2:
            raise KeyError("boom")
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    with pytest.raises(KeyError, match="boom"):
        await run_bounded(range(5), work, limit=5)
    assert sorted(cancelled) == [0, 1, 3, 4]


async def test_cancelling_the_caller_cancels_every_worker() -> None:
    """Cancelling the task running run_bounded cancels all workers before it returns."""
    started = 0
    cancelled = 0
    never = asyncio.Event()

    async def work(_n: int) -> None:
        nonlocal started, cancelled
        started += 1
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise

    task = asyncio.create_task(run_bounded(range(10), work, limit=4))
    await yield_times(5)
    assert started == 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == 4


async def test_empty_input_gives_empty_results() -> None:
    """No items means no workers and an empty list."""

    async def work(n: int) -> int:
        return n

    assert await run_bounded([], work, limit=3) == []


async def test_a_limit_below_one_is_refused() -> None:
    """limit=0 raises ValueError rather than hanging."""

    async def work(n: int) -> int:
        return n

    with pytest.raises(ValueError, match="limit"):
        await run_bounded([1], work, limit=0)
