"""Real processes for kill trials: launched without waiting, killed with SIGKILL at a moment.

A trial launches a daemon (or ``bootsync mirror``) and waits for its moment —
an amount of bytes served by the fake upstream, or an event in its log — then
sends SIGKILL, as the OOM killer or a power cut would. :class:`Moment` is that
choice, drawn from the trial's seeded RNG and printed with it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tests.fakes.daemons import REPO, DaemonProcess


@dataclass(frozen=True)
class Moment:
    """When to kill: once ``after_bytes`` item bytes were served, then ``delay_s`` later.

    ``after_bytes`` None means: once the run finished (its end event logged),
    which kills a process while it tidies up or sits idle.
    """

    after_bytes: int | None
    delay_s: float

    @classmethod
    def draw(cls, rng: random.Random, total_bytes: int) -> Moment:
        """A moment: most often within the transfer, sometimes just after the run."""
        delay = rng.choice((0.0, rng.uniform(0, 0.05), rng.uniform(0, 0.3)))
        if rng.random() < 0.15:
            return cls(None, delay)
        return cls(int(rng.uniform(0, total_bytes)), delay)

    def __str__(self) -> str:
        start = "the end of the run" if self.after_bytes is None else f"{self.after_bytes} B"
        return f"kill -9 at {start} + {self.delay_s * 1000:.0f} ms"


def relaunchable(daemon: DaemonProcess, log_path: Path) -> DaemonProcess:
    """``daemon`` (not started) logging to ``log_path``: one log per run of a trial."""
    return replace(daemon, log_path=log_path, proc=None)


async def launch(daemon: DaemonProcess) -> None:
    """Start ``daemon``'s process and return at once (no readiness wait)."""
    with daemon.log_path.open("ab") as log:
        daemon.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            daemon.module,
            *daemon.args,
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(REPO), **daemon.env},
            cwd=REPO,
        )


async def kill_at(
    proc: asyncio.subprocess.Process,
    moment: Moment,
    *,
    served: Callable[[], int],
    finished: Callable[[], bool],
    timeout: float = 60,
) -> bool:
    """SIGKILL ``proc`` at ``moment``; True if it was still running to be killed.

    ``served()`` says how many item bytes were served so far, ``finished()``
    whether the run logged its end. A byte moment never reached (the run ended
    first) kills at the end instead.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.returncode is None:
        if finished() or (moment.after_bytes is not None and served() >= moment.after_bytes):
            break
        await asyncio.sleep(0.005)
    else:
        if proc.returncode is None:
            raise TimeoutError(f"the moment never came: {moment}")
    if moment.delay_s:
        await asyncio.sleep(moment.delay_s)
    alive = proc.returncode is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    await proc.wait()
    return alive


async def spawn(argv: list[str], *, log_path: Path) -> asyncio.subprocess.Process:
    """Start ``python -m argv...`` writing its output to ``log_path``; return at once."""
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *argv,
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO,
        )


async def run_to_end(argv: list[str], *, log_path: Path, timeout: float = 90) -> tuple[int, str]:
    """Run ``python -m argv...`` to its end; its exit code and what it wrote."""
    proc = await spawn(argv, log_path=log_path)
    try:
        async with asyncio.timeout(timeout):
            code = await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return code, log_path.read_text(errors="replace")
