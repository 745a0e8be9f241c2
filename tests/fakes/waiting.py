"""Waiting for something to happen, instead of sleeping for a while and hoping it did."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

DEFAULT_TIMEOUT_S = 20.0


async def eventually(
    check: Callable[[], object],
    what: str = "the condition",
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    pause: float = 0.02,
) -> None:
    """Poll ``check()`` (sync or async) until it is true; fail after ``timeout`` s naming ``what``."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(pause)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
