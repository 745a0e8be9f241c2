"""``configure_logging(lazy=True)``: the settings wait for the first logger, then apply as given."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from common.ops import logging as ops_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put structlog (and any recorded lazy settings) back as they were after the test."""
    saved = structlog.get_config()
    yield
    ops_logging._deferred = None  # no recorded settings left for later tests
    structlog.configure(**saved)


@pytest.mark.usefixtures("restored_logging")
def test_lazy_settings_apply_when_the_first_logger_is_made() -> None:
    """Nothing is configured until get_logger(); then events go out at the recorded level."""
    out = io.StringIO()
    before = structlog.get_config()["processors"]
    ops_logging.configure_logging(level="warning", fmt="json", stream=out, lazy=True)
    assert structlog.get_config()["processors"] == before
    log = ops_logging.get_logger("lazy_test")
    log.info("lazy_quiet_event")
    log.warning("lazy_loud_event", n=1)
    written = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(w["event"], w["component"], w["level"]) for w in written] == [
        ("lazy_loud_event", "lazy_test", "warning")
    ]


@pytest.mark.usefixtures("restored_logging")
def test_an_eager_configuration_replaces_recorded_lazy_settings() -> None:
    """configure_logging() after a lazy one wins; a later get_logger() does not undo it."""
    lazy_out, eager_out = io.StringIO(), io.StringIO()
    ops_logging.configure_logging(level="error", fmt="json", stream=lazy_out, lazy=True)
    ops_logging.configure_logging(level="info", fmt="json", stream=eager_out)
    ops_logging.get_logger("lazy_test").info("lazy_eager_event")
    assert lazy_out.getvalue() == ""
    assert json.loads(eager_out.getvalue())["event"] == "lazy_eager_event"


def test_a_lazy_configuration_still_refuses_an_unknown_level() -> None:
    """The level is checked when the settings are recorded, not when they apply."""
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        ops_logging.configure_logging(level="loud", lazy=True)
