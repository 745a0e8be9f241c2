"""Structured logging, configured once per process.

Events are short snake_case facts (``signature_verified``, ``download_finished``,
``snapshot_published``). On a terminal they are rendered for people; anywhere
else (systemd, pipes, CI) as one JSON object per line on stderr, so stdout stays
free for a command's own output.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
LOG_LEVELS = tuple(_LEVELS)


def configure_logging(
    *, level: str = "info", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Configure structlog for this process.

    ``fmt="auto"`` picks the console renderer when ``stream`` is a terminal and
    JSON lines otherwise. Raises ``ValueError`` for an unknown level.
    """
    if level.lower() not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}")
    out = stream if stream is not None else sys.stderr
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
    return structlog.get_logger(component=name)


def short_sha(sha256: str) -> str:
    """The 12-character prefix used for sha256 values in log events."""
    return sha256[:12]
