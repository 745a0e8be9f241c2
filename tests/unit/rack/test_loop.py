"""The sync loop: on start, on a timer, on request; one at a time with one queued; never dies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

from rack.loop import SyncFunction, SyncLoop

HOUR = 3600.0


@asynccontextmanager
async def running(loop: SyncLoop) -> AsyncIterator[SyncLoop]:
    """Run ``loop`` in a task for the duration of the block."""
    task = asyncio.create_task(loop.run())
    try:
        yield loop
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Recorder:
    """A sync function that records its reasons and can be held at a gate."""

    def __init__(self, *, retry: bool = False, crash_first: bool = False) -> None:
        self.reasons: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.called = asyncio.Event()
        self.retry = retry
        self.crash_first = crash_first

    async def __call__(self, reason: str) -> bool:
        self.reasons.append(reason)
        self.called.set()
        await self.gate.wait()
        if self.crash_first and len(self.reasons) == 1:
            raise RuntimeError("a bug in the sync")
        return self.retry


async def until(check: Any) -> None:
    """Yield to the loop until ``check()`` is true."""
    async with asyncio.timeout(5):
        while True:
            if check():
                return
            await asyncio.sleep(0.001)


async def test_the_loop_syncs_once_at_start_and_then_waits_for_the_timer() -> None:
    """With an hour-long interval and no request there is exactly one sync, for "start"."""
    sync = Recorder()
    async with running(SyncLoop(sync, interval_s=HOUR)) as loop:
        await until(lambda: loop.runs == 1)
        for _ in range(20):
            await asyncio.sleep(0)
    assert sync.reasons == ["start"]


async def test_requests_during_a_sync_queue_exactly_one_more() -> None:
    """Five requests while a sync runs fold into one follow-up sync carrying their reasons."""
    sync = Recorder()
    sync.gate.clear()
    async with running(SyncLoop(sync, interval_s=HOUR)) as loop:
        await sync.called.wait()
        for reason in ("snapshot", "import", "snapshot", "registered", "import"):
            loop.request(reason)
        sync.gate.set()
        await until(lambda: loop.runs == 2)
        for _ in range(20):
            await asyncio.sleep(0)
        assert loop.runs == 2
    assert sync.reasons == ["start", "snapshot,import,registered"]


async def test_an_idle_loop_syncs_at_once_on_request() -> None:
    """A request after the start sync is served without waiting for the timer."""
    sync = Recorder()
    async with running(SyncLoop(sync, interval_s=HOUR)) as loop:
        await until(lambda: loop.runs == 1)
        loop.request("import")
        await until(lambda: loop.runs == 2)
    assert sync.reasons == ["start", "import"]


async def test_the_timer_keeps_syncing_without_requests() -> None:
    """With a short interval the timer alone brings further syncs."""
    sync = Recorder()
    async with running(SyncLoop(sync, interval_s=0.01)) as loop:
        await until(lambda: loop.runs >= 3)
    assert sync.reasons[:3] == ["start", "timer", "timer"]


async def test_a_failure_worth_retrying_comes_back_before_the_interval() -> None:
    """A sync that asks for a retry is repeated after a short backoff, not after an hour."""
    sync = Recorder(retry=True)
    async with running(SyncLoop(sync, interval_s=HOUR, retry_base=0.01, retry_cap=0.02)) as loop:
        await until(lambda: loop.runs >= 3)
    assert sync.reasons[:3] == ["start", "retry", "retry"]


async def test_a_crashing_sync_is_logged_and_the_loop_goes_on(
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """An unexpected exception in one sync does not end the loop that cannot be switched off."""
    sync = Recorder(crash_first=True)
    async with running(SyncLoop(sync, interval_s=HOUR)) as loop:
        await until(lambda: loop.runs == 1)
        loop.request("import")
        await until(lambda: loop.runs == 2)
    assert [e["event"] for e in log_events].count("sync_crashed") == 1


@pytest.mark.parametrize("interval", [0.0, -1.0])
def test_a_loop_without_a_positive_interval_cannot_be_built(interval: float) -> None:
    """The loop refuses an interval that would spin or never fire."""
    sync: SyncFunction = Recorder()
    with pytest.raises(ValueError, match="interval_s must be positive"):
        SyncLoop(sync, interval_s=interval)
