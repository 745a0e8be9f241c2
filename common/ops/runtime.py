"""Running a coroutine on the event loop each program chose (asyncio or uvloop)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
LoopName = Literal["asyncio", "uvloop"]
LOOP_ENV = "BOOTSYNC_EVENT_LOOP"


def loop_factory(name: LoopName) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``name``; None means asyncio's default loop."""
    if name == "uvloop":
        import uvloop  # noqa: PLC0415 - optional at import time, needed only here

        return uvloop.new_event_loop
    return None


def chosen_loop(default: LoopName) -> LoopName:
    """``default``, unless ``$BOOTSYNC_EVENT_LOOP`` names another (benchmarks use it)."""
    value = os.environ.get(LOOP_ENV, default)
    if value not in ("asyncio", "uvloop"):
        raise ValueError(f"{LOOP_ENV}={value!r}: use asyncio or uvloop")
    return value  # type: ignore[return-value]


def run(main: Coroutine[Any, Any, T], *, default_loop: LoopName) -> T:
    """Run ``main`` to completion on the chosen loop and return its result."""
    with asyncio.Runner(loop_factory=loop_factory(chosen_loop(default_loop))) as runner:
        return runner.run(main)
