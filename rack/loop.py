"""The rack's sync loop: every few minutes, always, and at once when asked.

One sync runs at a time. A request that arrives while one runs queues exactly
one more; further requests while that one waits are folded into it (MAAS racks
behave the same way). Between syncs the loop sleeps the interval with a little
jitter, so racks started together do not poll in step. After a failed sync
that is worth retrying soon, the next one comes after a backoff (at most
``retry_cap`` seconds) instead of the full interval.

There is deliberately no way to stop the timer: the interval is validated in
:mod:`rack.config` and the loop only ends when its task is cancelled.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from common.ops.logging import get_logger
from common.transfer.http import backoff_delay

log = get_logger("rack.loop")

JITTER = 0.05  # ± 5 % of the interval

SyncFunction = Callable[[str], Awaitable[bool]]
"""Runs one sync for the given reason; returns True when a failure should be retried soon."""


class SyncLoop:
    """Calls ``sync(reason)`` on start, every ``interval_s`` seconds, and on :meth:`request`."""

    def __init__(
        self,
        sync: SyncFunction,
        *,
        interval_s: float,
        retry_base: float = 5.0,
        retry_cap: float = 60.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._sync = sync
        self._interval_s = interval_s
        self._retry_base = retry_base
        self._retry_cap = min(retry_cap, interval_s)
        self._wake = asyncio.Event()
        self._reasons: list[str] = []
        self.running = False
        self.runs = 0

    def request(self, reason: str) -> None:
        """Ask for a sync; coalesces with any request already waiting."""
        if reason not in self._reasons:
            self._reasons.append(reason)
        self._wake.set()

    async def run(self) -> None:
        """Sync on start, then forever; only cancellation ends it."""
        self.request("start")
        failures = 0
        while True:
            delay = self._next_delay(failures)
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
                reason = ",".join(self._reasons)
            except TimeoutError:
                reason = "retry" if failures else "timer"
            self._wake.clear()
            self._reasons.clear()
            retry = await self._run_one(reason)
            failures = failures + 1 if retry else 0

    def _next_delay(self, failures: int) -> float:
        if failures:
            return (
                backoff_delay(failures, base=self._retry_base, cap=self._retry_cap)
                + self._retry_base / 2
            )
        return self._interval_s * random.uniform(1 - JITTER, 1 + JITTER)

    async def _run_one(self, reason: str) -> bool:
        self.running = True
        try:
            return await self._sync(reason)
        except Exception:
            # A bug in one sync must not end the loop that cannot be switched off.
            log.exception("sync_crashed", reason=reason)
            return False
        finally:
            self.running = False
            self.runs += 1
