"""Pieces both daemons' entry points share: SIGHUP reload, task spawning, data-dir check."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol

from common.errors import ConfigError
from common.ops import metrics
from common.ops.envconfig import data_dir_problem
from common.ops.logging import LogFormat, get_logger

log = get_logger("daemon")


class LoggingSettings(Protocol):
    """What a daemon's configuration says about logging."""

    @property
    def log_level(self) -> str: ...

    @property
    def log_format(self) -> LogFormat: ...


async def reload_logging(
    read_config: Callable[[], LoggingSettings], observers: Sequence[metrics.EventObserver]
) -> None:
    """SIGHUP: apply the log level and format the configuration says now.

    ``read_config`` re-reads the file (it blocks, so it runs in a worker thread);
    a bad file is logged and the running settings stay.
    """
    try:
        config = await asyncio.to_thread(read_config)
    except ConfigError as exc:
        log.error("config_reload_failed", error=str(exc))  # noqa: TRY400 - expected, not a bug
        return
    metrics.configure_daemon_logging(
        level=config.log_level, fmt=config.log_format, observers=observers
    )
    # A warning, so that it shows whatever level was chosen (but error).
    log.warning("log_level_reloaded", level=config.log_level, format=config.log_format)


def spawn(tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` as a task kept alive in ``tasks`` until it ends."""
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def check_data_dir(prog: str, data_dir: Path, config_path: Path | None) -> int:
    """``--check-config`` once the configuration is valid: 0, or 2 after printing why."""
    problem = data_dir_problem(data_dir, key="storage.data_dir")
    if problem is not None:
        print(f"{prog}: invalid data directory:\n  {problem}", file=sys.stderr)
        return 2
    print(f"{config_path or 'defaults'}: ok")
    return 0
