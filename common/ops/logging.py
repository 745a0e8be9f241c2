"""Structured logging, configured once per process.

Events are short snake_case facts (``signature_verified``, ``download_finished``,
``snapshot_published``). On a terminal they are rendered for people; anywhere
else (systemd, pipes, CI) as one JSON object per line on stderr, so stdout stays
free for a command's own output.

structlog is imported when logging is configured or a logger is made, not with
this module. ``configure_logging(lazy=True)`` (the CLI's API calls) records the
settings and applies them when the first logger is made: a command that never
logs never imports structlog.
"""

from __future__ import annotations

import sys
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")

# The standard library's logging.DEBUG ... ERROR, without importing logging (CLI start-up).
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
LOG_LEVELS = tuple(_LEVELS)
# Settings recorded by configure_logging(lazy=True), applied by the first get_logger().
_deferred: tuple[str, LogFormat, TextIO] | None = None


def configure_logging(
    *,
    level: str = "info",
    fmt: LogFormat = "auto",
    stream: TextIO | None = None,
    lazy: bool = False,
) -> None:
    """Configure structlog for this process.

    ``fmt="auto"`` picks the console renderer when ``stream`` is a terminal and
    JSON lines otherwise. Raises ``ValueError`` for an unknown level. ``lazy``
    only records the settings; :func:`get_logger` or :func:`apply_deferred_logging`
    applies them.
    """
    global _deferred  # noqa: PLW0603 - one configuration per process
    if level.lower() not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}")
    out = stream if stream is not None else sys.stderr
    if lazy:
        _deferred = (level, fmt, out)
        return
    _deferred = None
    import structlog  # noqa: PLC0415 - see the module docstring

    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level.lower()]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """Return a logger whose events carry ``component=name``.

    It stays lazy until first used, so a module-level logger made at import time
    still follows the configuration done later in ``main``.
    """
    apply_deferred_logging()
    import structlog  # noqa: PLC0415 - see the module docstring

    return structlog.get_logger(component=name)


def apply_deferred_logging() -> None:
    """Apply the settings ``configure_logging(lazy=True)`` recorded, if not yet applied."""
    if _deferred is not None:
        level, fmt, out = _deferred
        configure_logging(level=level, fmt=fmt, stream=out)


def short_sha(sha256: str) -> str:
    """The 12-character prefix used for sha256 values in log events."""
    return sha256[:12]
