"""Prometheus metrics of one daemon process, derived from its log events.

Every counter here moves in :func:`record_event`, an observer of the log
events the code already emits at its summary points (``import_finished``,
``pull_finished``, ``download_finished``, ``download_failed``, ...). So the
metrics cannot disagree with the logs, and business code carries no metric
calls. :func:`tap_log_events` hands every event to the observers *before* the
level filter, so a daemon logging at ``warning`` still counts its imports.

What only the running app knows (seconds since the last successful sync,
snapshot age, per-rack state at the region) is read at scrape time from the
app's :data:`LIVE_METRICS` source. Bytes served are counted by
:func:`count_served` from each response's Content-Length.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from common.ops.logging import LogFormat, configure_logging
from common.storage.snapshot import MANIFEST_NAME

EventObserver = Callable[[str, Mapping[str, Any]], None]
"""Called with the event name and its fields; must be quick and must not block."""

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_SYNC_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
_FILE_BUCKETS = (0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600)

IMPORTS = Counter(
    "bootsync_imports",
    "Region imports by outcome (ok, failed, cancelled).",
    ["outcome"],
    registry=REGISTRY,
)
IMPORT_SECONDS = Histogram(
    "bootsync_import_duration_seconds",
    "Duration of region imports.",
    buckets=_SYNC_BUCKETS,
    registry=REGISTRY,
)
PULLS = Counter(
    "bootsync_pulls",
    "Rack pulls by outcome (ok, unchanged, failed, cancelled).",
    ["outcome"],
    registry=REGISTRY,
)
PULL_SECONDS = Histogram(
    "bootsync_pull_duration_seconds",
    "Duration of rack pulls.",
    buckets=_SYNC_BUCKETS,
    registry=REGISTRY,
)
DOWNLOADS = Counter(
    "bootsync_downloads", "File downloads by outcome (ok, failed).", ["outcome"], registry=REGISTRY
)
DOWNLOAD_SECONDS = Histogram(
    "bootsync_download_duration_seconds",
    "Duration of successful file downloads, retries included.",
    buckets=_FILE_BUCKETS,
    registry=REGISTRY,
)
DOWNLOADED_BYTES = Counter(
    "bootsync_downloaded_bytes",
    "Bytes received for files that downloaded and verified.",
    registry=REGISTRY,
)
FILES_VERIFIED = Counter(
    "bootsync_files_verified",
    "Downloaded files whose size and sha256 matched the signed metadata.",
    registry=REGISTRY,
)
VERIFICATION_FAILURES = Counter(
    "bootsync_verification_failures",
    "Files or documents refused by a check, by reason (sha256_mismatch, size_mismatch, "
    "oversize, bad_signature, unknown_key, ...).",
    ["reason"],
    registry=REGISTRY,
)
SERVED_BYTES = Counter(
    "bootsync_served_bytes",
    "Bytes of image and stream files served (Content-Length of GET "
    "responses with status 200 or 206).",
    registry=REGISTRY,
)
SERVED_FILES = Counter(
    "bootsync_served_files",
    "GET responses with status 200 or 206 for image and stream files.",
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "bootsync_last_successful_sync_timestamp_seconds",
    "Unix time of the last import (region) or pull (rack) that succeeded "
    "in this process; 0 before the first.",
    registry=REGISTRY,
)
OBSERVER_ERRORS = Counter(
    "bootsync_event_observer_errors",
    "Log events an observer failed on (a bug; the event was still logged).",
    registry=REGISTRY,
)

# Integrity reasons come from download_failed; signature reasons from a rack's
# pull_refused. A pull that fails on a bad file is not counted twice: its
# download_failed already was.
INTEGRITY_REASONS = frozenset({"sha256_mismatch", "size_mismatch", "oversize", "integrity"})
SIGNATURE_REASONS = frozenset(
    {
        "signature",
        "no_signature",
        "bad_signature",
        "tampered_payload",
        "unknown_key",
        "expired_key",
        "keyring",
    }
)

OBSERVED_EVENTS = frozenset(
    {"import_finished", "pull_finished", "download_finished", "download_failed", "pull_refused"}
)
"""The log events :func:`record_event` reads (the catalogue test checks they exist)."""


_last_success: list[float] = []  # the Unix time of the last successful sync, once known


def record_event(event: str, fields: Mapping[str, Any]) -> None:
    """Update the counters for one log event (an :data:`EventObserver`)."""
    if event == "import_finished":
        outcome = str(fields.get("outcome", "unknown"))
        IMPORTS.labels(outcome).inc()
        IMPORT_SECONDS.observe(float(fields.get("duration_s", 0.0)))
        if outcome == "ok":
            _succeeded()
    elif event == "pull_finished":
        outcome = str(fields.get("outcome", "unknown"))
        PULLS.labels(outcome).inc()
        PULL_SECONDS.observe(float(fields.get("duration_s") or 0.0))
        if outcome in ("ok", "unchanged"):
            _succeeded()
    elif event == "download_finished":
        DOWNLOADS.labels("ok").inc()
        FILES_VERIFIED.inc()
        DOWNLOADED_BYTES.inc(int(fields.get("bytes", 0)))
        DOWNLOAD_SECONDS.observe(float(fields.get("duration_s", 0.0)))
    elif event == "download_failed":
        DOWNLOADS.labels("failed").inc()
        if fields.get("reason") in INTEGRITY_REASONS:
            VERIFICATION_FAILURES.labels(str(fields["reason"])).inc()
    elif event == "pull_refused" and fields.get("reason") in SIGNATURE_REASONS:
        VERIFICATION_FAILURES.labels(str(fields["reason"])).inc()


def _succeeded() -> None:
    now = time.time()
    LAST_SUCCESS.set(now)
    _last_success[:] = [now]


def seconds_since_success(*recorded: str | None) -> float | None:
    """Seconds since the last successful sync: this process's, or the newest ``recorded``.

    ``recorded`` are ISO 8601 times kept across restarts (naive ones are UTC);
    unparsable ones are ignored. None when no success is known at all.
    """
    times = list(_last_success)
    for text in recorded:
        if text:
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                continue
            times.append((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())
    return max(0.0, time.time() - max(times)) if times else None


async def snapshot_age(root: Path) -> float | None:
    """Seconds since the snapshot ``root/current`` points at was first published, or None.

    Its manifest is written just before publication and never touched again, so
    republishing identical content does not make the snapshot look new.
    """

    def age() -> float | None:
        try:
            return max(0.0, time.time() - (root / "current" / MANIFEST_NAME).stat().st_mtime)
        except FileNotFoundError:
            return None

    return await asyncio.to_thread(age)


# --- seeing every log event ------------------------------------------------------------

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


class _Tap:
    """First processor: shows each event to the observers, then passes it on unchanged."""

    def __init__(self, observers: Sequence[EventObserver]) -> None:
        self.observers = tuple(observers)

    def __call__(self, _logger: Any, _method: str, event_dict: Any) -> Any:
        name = event_dict.get("event")
        if isinstance(name, str):
            for observer in self.observers:
                try:
                    observer(name, event_dict)
                except Exception:  # noqa: BLE001 - a metrics bug must never break the caller
                    OBSERVER_ERRORS.inc()
        return event_dict


class _LevelFilter:
    """Second processor: drops events below the configured level (after the tap saw them)."""

    def __init__(self, level: str) -> None:
        self.minimum = _LEVELS[level.lower()]

    def __call__(self, _logger: Any, method: str, event_dict: Any) -> Any:
        if _LEVELS.get(method, logging.CRITICAL) < self.minimum:
            raise structlog.DropEvent
        return event_dict


def tap_log_events(observers: Sequence[EventObserver], *, level: str) -> None:
    """Let ``observers`` see every log event of this process, whatever ``level``.

    Call it after :func:`common.ops.logging.configure_logging` (and again after each
    reconfiguration): it keeps that configuration's processors and moves the
    ``level`` filter behind the observers. Raises KeyError for an unknown level.
    """
    level_filter = _LevelFilter(level)
    kept = [
        p for p in structlog.get_config()["processors"] if not isinstance(p, _Tap | _LevelFilter)
    ]
    structlog.configure(
        processors=[_Tap(observers), level_filter, *kept],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )


def configure_daemon_logging(
    *, level: str, fmt: LogFormat, observers: Sequence[EventObserver]
) -> None:
    """:func:`~common.ops.logging.configure_logging`, then :func:`tap_log_events` (at start
    and at each SIGHUP). Raises ValueError for an unknown level."""
    configure_logging(level=level, fmt=fmt)
    tap_log_events(observers, level=level)


# --- the /metrics endpoint ----------------------------------------------------------------


class LiveMetrics(Protocol):
    """Reads the app's scrape-time values (must not block: use threads for files)."""

    async def __call__(self) -> list[Metric]: ...


LIVE_METRICS = web.AppKey("live_metrics", LiveMetrics)


def gauge(name: str, documentation: str, value: float | None) -> list[Metric]:
    """A one-sample gauge family, or none when ``value`` is unknown (None)."""
    return [] if value is None else [GaugeMetricFamily(name, documentation, value=value)]


def labelled_gauge(
    name: str,
    documentation: str,
    labels: Sequence[str],
    rows: Iterable[tuple[Sequence[str], float]],
) -> Metric:
    """A gauge family with one sample per (label values, value) row."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in rows:
        family.add_metric(list(values), value)
    return family


class _Scrape:
    """One scrape: the process registry plus the app's live families."""

    def __init__(self, live: list[Metric]) -> None:
        self._live = live

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self._live


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    """``GET /metrics``: Prometheus text (or OpenMetrics when the Accept header asks)."""
    source = request.app.get(LIVE_METRICS)
    live = await source() if source is not None else []
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    # The process collector reads /proc: render in a worker thread.
    body = await asyncio.to_thread(encoder, _Scrape(live))
    return web.Response(body=body, headers={"Content-Type": content_type})


def count_served(prefix: str) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` hook counting file bytes served under ``prefix``.

    It runs once the headers are final, so a FileResponse's Content-Length is the
    whole file (200) or the range sent (206); HEAD requests send no body.
    """

    async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if (
            request.method == "GET"
            and response.status in (200, 206)
            and request.path.startswith(prefix)
        ):
            SERVED_FILES.inc()
            SERVED_BYTES.inc(response.content_length or 0)

    return on_response_prepare
