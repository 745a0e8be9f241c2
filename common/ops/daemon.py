"""What both daemons' entry points share: :func:`serve`, SIGHUP reload, the data-dir check.

:func:`serve` runs a daemon's aiohttp app under systemd's ``Type=notify``:
it starts the app, sends READY=1 and WATCHDOG=1, waits for SIGTERM or SIGINT,
drains (:func:`drain`: no new work, a running one gets the grace period to
finish, then is cancelled), then stops the server. Each daemon supplies its
own :class:`Work` and :class:`Milestones`, so its log event names stay its own.
Every connection gets the header timeout and the per-client cap of
:mod:`common.ops.connlimit`; ``/metrics`` may have a listener of its own
(:mod:`common.ops.metrics_access`).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from common.errors import ConfigError
from common.ops import metrics
from common.ops.connlimit import ConnectionLimits, make_runner, start_site
from common.ops.envconfig import data_dir_problem
from common.ops.logging import LogFormat, get_logger
from common.ops.metrics_access import metrics_app
from common.ops.sdnotify import Notifier, StatusLine
from common.ops.tomlconfig import check_host_port

log = get_logger("daemon")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class LoggingSettings(Protocol):
    """What a daemon's configuration says about logging."""

    @property
    def log_level(self) -> str: ...

    @property
    def log_format(self) -> LogFormat: ...


class ServeSettings(LoggingSettings, Protocol):
    """What :func:`serve` reads from a daemon's configuration."""

    @property
    def listen_host(self) -> str: ...

    @property
    def listen_port(self) -> int: ...

    @property
    def shutdown_grace_s(self) -> int: ...

    @property
    def header_timeout_s(self) -> int: ...

    @property
    def max_client_connections(self) -> int: ...

    @property
    def metrics_listen(self) -> str:
        """``HOST:PORT`` of a listener for ``/metrics`` alone; "": the main port serves it."""

    @property
    def metrics_token(self) -> str:
        """The Bearer token ``/metrics`` requires; "": none."""


class Work(Protocol):
    """What a daemon lets finish before it stops: the region's import, the rack's pull."""

    @property
    def name(self) -> str:
        """What the shutdown events call it (``work`` field): ``import``, ``pull``."""

    def close(self) -> None:
        """Let no new work start."""

    def running(self) -> bool:
        """True while some work runs."""

    async def finished(self) -> None:
        """Return once no work runs (at once if none does); never polls."""

    async def cancel(self) -> None:
        """Cancel the work still running and wait for it to end."""


@dataclass(frozen=True, kw_only=True)
class Milestones:
    """What a daemon logs as :func:`serve` goes: its own event names, in its own source."""

    listening: Callable[[], None]
    """The server accepts connections (READY=1 follows)."""
    stopping: Callable[[], None]
    """A stop signal came: draining begins (STOPPING=1 follows)."""
    stopped: Callable[[], None]
    """The server and everything the app opened are closed."""


async def drain(work: Work, grace_s: float) -> None:
    """Shutdown, first step: no new work; a running one gets ``grace_s`` to finish.

    Work still running after ``grace_s`` is cancelled. The web server keeps
    serving meanwhile.
    """
    work.close()
    if not work.running():
        return
    log.info("shutdown_waiting", work=work.name, grace_s=grace_s)
    try:
        async with asyncio.timeout(grace_s):
            await work.finished()
    except TimeoutError:
        log.warning("shutdown_grace_expired", work=work.name, grace_s=grace_s)
        await work.cancel()


async def serve(
    app: web.Application,
    config: ServeSettings,
    *,
    work: Callable[[web.Application], Work],
    milestones: Milestones,
    starting: str = "starting",
    reread: Callable[[], LoggingSettings] | None = None,
    notifier: Notifier | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then drain its work and stop, in order.

    ``work`` gives the app's :class:`Work` (the daemon's class taking the app);
    ``starting`` is the STATUS= line until the app listens; ``reread`` (re-reads
    the configuration) lets SIGHUP apply a new log level and format; ``notifier``
    talks to systemd (default: the one ``$NOTIFY_SOCKET`` names, if any). Raises
    OSError when the address cannot be bound.
    """
    notifier = notifier if notifier is not None else Notifier()
    status = StatusLine(notifier, idle="idle")
    observers: list[metrics.EventObserver] = [metrics.record_event, status]
    metrics.tap_log_events(observers, level=config.log_level)
    notifier.status(starting)
    limits = ConnectionLimits(
        header_timeout_s=config.header_timeout_s, per_client=config.max_client_connections
    )
    runner = make_runner(app, limits, shutdown_timeout=config.shutdown_grace_s)
    runners = [runner]
    # Handlers first: a signal sent as soon as READY=1 arrives must not hit the default action.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = list(STOP_SIGNALS)
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    reloads: set[asyncio.Task[None]] = set()
    if reread is not None:
        loop.add_signal_handler(
            signal.SIGHUP, lambda: spawn(reloads, reload_logging(reread, observers))
        )
        handled.append(signal.SIGHUP)
    watchdog = asyncio.create_task(notifier.run_watchdog(), name="sd-watchdog")
    try:
        await runner.setup()  # the app's cleanup_ctx opens what it needs
        await start_site(runner, config.listen_host, config.listen_port, limits, backlog=1024)
        if config.metrics_listen:
            runners.append(await serve_metrics(app, config, limits))
        milestones.listening()
        notifier.ready(status.text)
        await stop.wait()
        milestones.stopping()
        notifier.stopping()
        await drain(work(app), config.shutdown_grace_s)
    finally:
        for each in reversed(runners):
            await each.cleanup()
        watchdog.cancel()
        notifier.close()
        for signum in handled:
            loop.remove_signal_handler(signum)
    milestones.stopped()


async def serve_metrics(
    app: web.Application, config: ServeSettings, limits: ConnectionLimits
) -> web.AppRunner:
    """Serve ``/metrics`` of ``app`` on ``config.metrics_listen`` alone; its runner.

    Raises OSError when the address cannot be bound (the runner is cleaned up).
    """
    runner = make_runner(
        metrics_app(app.get(metrics.LIVE_METRICS), token=config.metrics_token),
        limits,
        shutdown_timeout=config.shutdown_grace_s,
    )
    await runner.setup()
    try:
        host, port = check_host_port(config.metrics_listen)
        await start_site(runner, host, port, limits, backlog=128)
    except BaseException:
        await runner.cleanup()
        raise
    return runner


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
