"""Login rate limiting: at most a few failed attempts per client address and username."""

from __future__ import annotations

import time
from collections import deque

MAX_FAILURES = 5
WINDOW_S = 300.0


class LoginLimiter:
    """Counts failed logins per (address, username) in a sliding window."""

    def __init__(self, *, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S) -> None:
        self._max = max_failures
        self._window = window_s
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self._window:
            times.popleft()
        return times

    def retry_after(self, address: str, username: str) -> float:
        """Seconds until ``username`` may try again from ``address`` (0: now)."""
        now = time.monotonic()
        times = self._recent((address, username.lower()), now)
        if len(times) < self._max:
            return 0.0
        return max(0.0, self._window - (now - times[0]))

    def failed(self, address: str, username: str) -> None:
        """Record one failed attempt."""
        key = (address, username.lower())
        self._recent(key, time.monotonic()).append(time.monotonic())
        if len(self._failures) > 10_000:  # forget the oldest keys rather than grow forever
            for stale in list(self._failures)[:1000]:
                del self._failures[stale]

    def succeeded(self, address: str, username: str) -> None:
        """Forget the failures of a user who logged in."""
        self._failures.pop((address, username.lower()), None)
