"""Running many isolated scenarios at once, each with its own log events.

A matrix module runs every scenario (its own region or mirror, its own fake
upstream) concurrently in one module fixture, so the retries and backoffs of
the faulty ones overlap instead of adding up; each scenario's test then reads
its own :class:`Outcome`. Log events are tagged with the scenario they came
from (a structlog context variable), and our code is guarded against blocking
calls on the loop as in every other test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from blockbuster import blockbuster_ctx

from tests.conftest import OUR_PACKAGES

T = TypeVar("T")
Events = list[MutableMapping[str, Any]]
SCENARIO_TIMEOUT_S = 90.0
"""A scenario still running after this has hung: its test fails saying so."""


@dataclass
class Outcome(Generic[T]):
    """What one scenario returned (or raised), and the log events it emitted."""

    value: T | None = None
    error: BaseException | None = None
    events: Events = field(default_factory=list)
    seconds: float = 0.0  # how long it ran

    def result(self) -> T:
        """The scenario's value; re-raises what it raised (a hang is a TimeoutError)."""
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value

    def crashes(self) -> Events:
        """Events that mean an unforeseen failure: a traceback, or a crash event."""
        return [
            e
            for e in self.events
            if "exc_info" in e
            or "exception" in e
            or e["event"] in ("import_failed", "import_settle_failed", "catalogue_refresh_crashed")
        ]


@contextmanager
def _tagged_capture() -> Iterator[Events]:
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as e:
        yield e


async def run_all(
    scenarios: dict[str, Callable[[], Awaitable[T]]], *, at_once: int = 6
) -> dict[str, Outcome[T]]:
    """Run the scenarios, ``at_once`` at a time, each under a timeout; name → its Outcome.

    Bounded so that a 2-core machine keeps every transfer well above the rates
    the scenarios check.
    """
    gate = asyncio.Semaphore(at_once)
    seconds: dict[str, float] = {}

    async def one(name: str, body: Callable[[], Awaitable[T]]) -> T:
        structlog.contextvars.bind_contextvars(scenario=name)
        async with gate:
            started = time.monotonic()
            try:
                async with asyncio.timeout(SCENARIO_TIMEOUT_S):
                    return await body()
            finally:
                seconds[name] = round(time.monotonic() - started, 2)

    with _tagged_capture() as events, blockbuster_ctx(OUR_PACKAGES):
        results = await asyncio.gather(
            *(one(name, body) for name, body in scenarios.items()), return_exceptions=True
        )
    outcomes: dict[str, Outcome[T]] = {}
    for name, result in zip(scenarios, results, strict=True):
        mine = [e for e in events if e.get("scenario") == name]
        if isinstance(result, BaseException):
            outcomes[name] = Outcome(error=result, events=mine, seconds=seconds[name])
        else:
            outcomes[name] = Outcome(value=result, events=mine, seconds=seconds[name])
    return outcomes
