"""How slow and how large a transfer may be: the defence against slow-retrieval attacks.

A server that sends one byte a second never trips a stall timeout, so every
GET of bootsync (metadata and files alike, see :mod:`common.transfer.http`) is
watched by a :class:`Pace`:

- **minimum rate**: each attempt is cut into windows of ``rate_window_s``
  seconds; a window in which fewer than ``min_rate × rate_window_s`` bytes
  arrived ends the transfer with :class:`~common.errors.TooSlowError`. A
  transfer that completes is never failed, so a small file is not judged;
- **deadline**: a file of ``size`` bytes may spend at most
  ``2 × rate_window_s + size / min_rate`` seconds transferring, over all its
  attempts together (the waits between attempts do not count); past that,
  :class:`~common.errors.DeadlineExceededError`. A document of unknown size
  gets the deadline of the largest one allowed until its length is announced.

Neither is retried: a server that slow is not expected to do better at once.
``min_rate = 0`` switches both off. ``max_metadata_bytes`` bounds what a
metadata document may weigh (:class:`~common.errors.MetadataTooLargeError`),
and with it the memory reading it takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from common.errors import DeadlineExceededError, TooSlowError, UpstreamError

if TYPE_CHECKING:  # the defaults are read by `bootsync --help`, which must not load asyncio
    import asyncio

DEFAULT_MIN_RATE = 4096
"""Bytes per second below which a transfer fails (averaged over the window)."""
DEFAULT_RATE_WINDOW_S = 60.0
DEFAULT_MAX_METADATA_BYTES = 32 << 20
"""The largest metadata document read; images.maas.io's products document is a few MiB."""
MIN_METADATA_BYTES = 64 << 10
"""The smallest ``max_metadata_bytes`` a config may set: no real index is smaller."""


@dataclass(frozen=True)
class TransferLimits:
    """The minimum rate, its window and the metadata size cap; raises ValueError if impossible."""

    min_rate: int = DEFAULT_MIN_RATE  # bytes per second; 0: no rate check, no deadline
    rate_window_s: float = DEFAULT_RATE_WINDOW_S
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES

    def __post_init__(self) -> None:
        if self.min_rate < 0:
            raise ValueError(f"min_rate must not be negative, got {self.min_rate}")
        if not self.rate_window_s > 0:
            raise ValueError(f"rate_window_s must be above 0, got {self.rate_window_s}")
        if self.max_metadata_bytes < 1:
            raise ValueError(
                f"max_metadata_bytes must be at least 1, got {self.max_metadata_bytes}"
            )

    @property
    def enforced(self) -> bool:
        """False when ``min_rate`` is 0: transfers may then take as long as they like."""
        return self.min_rate > 0

    def deadline_s(self, size: int) -> float | None:
        """Seconds of transfer a file of ``size`` bytes may take; None when not enforced."""
        if not self.enforced:
            return None
        return 2 * self.rate_window_s + size / self.min_rate


class Pace:
    """Watches one file's transfer over its attempts: a rate window each, one deadline.

    Make one per file (``size``: its length, or the largest length allowed when
    unknown), then run each attempt inside ``async with pace.attempt() as watch``
    and call ``watch.add(nbytes)`` as bytes arrive. The attempt is cancelled and
    TooSlowError or DeadlineExceededError raised from the ``async with``.
    """

    def __init__(self, limits: TransferLimits, *, url: str, size: int | None = None) -> None:
        self.limits = limits
        self.url = url
        self.size = size
        self.received = 0
        self.spent_s = 0.0  # transfer time of the attempts that ended
        self._budget = limits.deadline_s(size if size is not None else limits.max_metadata_bytes)

    @property
    def budget_s(self) -> float | None:
        """The transfer time this file is given, over all attempts; None when unlimited."""
        return self._budget

    def expect(self, size: int) -> None:
        """The server announced ``size`` bytes in all: a deadline for that size, if shorter."""
        if self.size is None:
            self.size = size
        allowed = self.limits.deadline_s(size)
        if allowed is not None and (self._budget is None or allowed < self._budget):
            self._budget = allowed

    def attempt(self) -> AttemptWatch:
        """The watch of one attempt (an async context manager)."""
        return AttemptWatch(self)


class AttemptWatch:
    """One attempt under a :class:`Pace`: cancels it when too slow or past the deadline."""

    def __init__(self, pace: Pace) -> None:
        self._pace = pace
        self._limits = pace.limits
        self._quota = pace.limits.min_rate * pace.limits.rate_window_s
        self._timeout: asyncio.Timeout | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._began = 0.0
        self._spent_before = 0.0
        self._window_end = 0.0
        self._window_bytes = 0
        self._scheduled = 0.0  # when the timeout fires
        self._deadline_due = False  # the timeout set is the deadline, not a window's end

    async def __aenter__(self) -> AttemptWatch:
        if not self._limits.enforced:
            return self
        import asyncio  # noqa: PLC0415 - see TYPE_CHECKING above

        self._loop = asyncio.get_running_loop()
        self._began = self._loop.time()
        self._spent_before = self._pace.spent_s
        self._window_end = self._began + self._limits.rate_window_s
        self._scheduled = self._next_check()
        self._timeout = asyncio.timeout_at(self._scheduled)
        await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timeout is None or self._loop is None:
            return
        self._pace.spent_s += self._loop.time() - self._began
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as timeout:
            raise self._failure() from timeout

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` just received."""
        self._pace.received += nbytes
        if self._timeout is None or self._loop is None or self._timeout.expired():
            return
        now = self._loop.time()
        while now >= self._window_end:
            if self._window_bytes < self._quota:
                return  # that window failed: the pending timeout fires at once
            self._window_end += self._limits.rate_window_s
            self._window_bytes = 0
        self._window_bytes += nbytes
        self._reschedule()

    def expect(self, size: int) -> None:
        """The server announced ``size`` bytes in all (see :meth:`Pace.expect`)."""
        self._pace.expect(size)
        if self._timeout is not None and not self._timeout.expired():
            self._reschedule()

    def _reschedule(self) -> None:
        # The check moves about twice a window, not with every chunk: keep the timer then.
        when = self._next_check()
        if when != self._scheduled and self._timeout is not None:
            self._scheduled = when
            self._timeout.reschedule(when)

    def _deadline(self) -> float | None:
        budget = self._pace.budget_s
        return None if budget is None else self._began + budget - self._spent_before

    def _next_check(self) -> float:
        """When this attempt fails unless more bytes arrive: a window's end or the deadline."""
        check = self._window_end
        if self._window_bytes >= self._quota:
            check += self._limits.rate_window_s  # this window passed: judge the next one
        deadline = self._deadline()
        self._deadline_due = deadline is not None and deadline <= check
        return check if deadline is None else min(check, deadline)

    def _failure(self) -> UpstreamError:
        pace = self._pace
        if self._deadline_due and pace.budget_s is not None:
            return DeadlineExceededError(
                url=pace.url, deadline_s=pace.budget_s, received=pace.received, size=pace.size
            )
        window = self._limits.rate_window_s
        # A window that met its quota moved the check to the end of the next one,
        # in which nothing arrived.
        failed_bytes = self._window_bytes if self._window_bytes < self._quota else 0
        return TooSlowError(
            url=pace.url,
            rate=failed_bytes / window,
            min_rate=self._limits.min_rate,
            window_s=window,
            received=pace.received,
        )
