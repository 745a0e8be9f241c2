"""Metrics follow the log events even below the log level, and ages come from recorded times."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from common.ops import metrics
from common.ops.logging import configure_logging, get_logger


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put structlog back as it was after the test reconfigures it."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def value(name: str, **labels: str) -> float:
    """The current value of one sample of the process registry (0 when absent)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.usefixtures("restored_logging")
def test_events_below_the_log_level_are_counted_but_not_written() -> None:
    """At level warning an ok import is not logged, yet bootsync_imports_total moves."""
    out = io.StringIO()
    configure_logging(level="warning", fmt="json", stream=out)
    seen: list[str] = []
    metrics.tap_log_events(
        [metrics.record_event, lambda event, _fields: seen.append(event)], level="warning"
    )
    log = get_logger("test")
    before = value("bootsync_imports_total", outcome="ok")
    log.info("import_finished", outcome="ok", duration_s=2.0)
    log.debug("download_reused", bytes=1)
    log.warning("download_failed", reason="sha256_mismatch", error="x")
    assert value("bootsync_imports_total", outcome="ok") == before + 1
    assert seen == ["import_finished", "download_reused", "download_failed"]
    written = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert written == ["download_failed"]


@pytest.mark.usefixtures("restored_logging")
def test_a_failing_observer_never_breaks_the_code_that_logged() -> None:
    """An exception in an observer is counted, and the event is still written."""
    out = io.StringIO()
    configure_logging(level="info", fmt="json", stream=out)

    def broken(_event: str, _fields: object) -> None:
        raise RuntimeError("bug")

    metrics.tap_log_events([broken], level="info")
    before = value("bootsync_event_observer_errors_total")
    get_logger("test").info("pull_started", reason="test")
    assert value("bootsync_event_observer_errors_total") == before + 1
    assert json.loads(out.getvalue())["event"] == "pull_started"


def test_seconds_since_success_takes_the_newest_recorded_time() -> None:
    """Naive times are UTC; garbage and None are ignored; nothing known gives None."""
    metrics._last_success.clear()
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    age = metrics.seconds_since_success(day_ago, hour_ago, "not a time", None)
    assert age is not None
    assert 3500 < age < 3700
    assert metrics.seconds_since_success(None, "") is None
