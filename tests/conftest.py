"""Fixtures every test shares: blockbuster on our own code, and captured log events."""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from blockbuster import blockbuster_ctx

pytest_plugins = [
    "tests.fakes.gpg",
    "tests.fakes.postgres",  # postgres_server: one PostgreSQL server for the whole session
    "tests.fakes.upstream",
    "tests.fakes.streams",
    "tests.integration.region.api_harness",
    "tests.reliability.plugin",  # --reliability-trials, --reliability-seed
]

OUR_PACKAGES = ["common", "simplestreams", "region", "rack"]


@pytest.fixture(autouse=True)
def no_blocking_calls_on_the_loop() -> Iterator[None]:
    """Fail any test in which our code makes a blocking call on a running event loop."""
    with blockbuster_ctx(OUR_PACKAGES):
        yield


@pytest.fixture(autouse=True)
def dev_null_left_alone() -> Iterator[None]:
    """Fail the test that changes /dev/null's mode (gpg, initdb and shells need it 0666)."""
    before = Path(os.devnull).stat().st_mode
    yield
    after = Path(os.devnull).stat().st_mode
    assert after == before, f"/dev/null mode changed from {before:o} to {after:o}"


@pytest.fixture
def log_events() -> Iterator[list[MutableMapping[str, Any]]]:
    """Collect the structlog events emitted during the test."""
    with structlog.testing.capture_logs() as events:
        yield events
