"""A bounded pool of worker tasks: the single fan-out point for downloads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def run_bounded(
    items: Iterable[T], worker: Callable[[T], Awaitable[R]], limit: int
) -> list[R]:
    """Run ``worker`` on every item, at most ``limit`` at a time.

    Results come back in input order. Items are taken from a queue by ``limit``
    worker tasks in one TaskGroup: cancelling the caller cancels them all, and
    an exception raised by ``worker`` cancels the others and is re-raised as
    itself (further exceptions raised meanwhile are attached as notes).
    Raises ValueError when ``limit`` is below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    queue: asyncio.Queue[tuple[int, T]] = asyncio.Queue()
    for index, item in enumerate(items):
        queue.put_nowait((index, item))
    results: dict[int, R] = {}
    count = queue.qsize()

    async def drain() -> None:
        while not queue.empty():
            index, item = queue.get_nowait()
            results[index] = await worker(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(limit, count)):
                group.create_task(drain())
    except ExceptionGroup as failed:
        first = failed.exceptions[0]
        for other in failed.exceptions[1:]:
            first.add_note(f"also failed meanwhile: {other!r}")
        raise first from None
    return [results[index] for index in range(count)]
