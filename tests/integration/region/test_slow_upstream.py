"""A region import against a dripping upstream: it ends, with the slow file or source named.

The minimum rate is 64 KiB/s over half a second, so a server sending a few
hundred bytes every 50 ms fails within about a second; the sample stream's
16 KiB files arrive in one window from a server at full speed. No test asserts
how long anything took: a hang would be caught by the pytest timeout.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from common.mirror.samplestream import SampleStream
from common.transfer.limits import TransferLimits
from common.trust.keyrings import SigningKey
from region.db import sources as repo_sources
from tests.fakes.upstream import FakeUpstream
from tests.integration.region.import_harness import import_env, item_paths, sample_stream

Events = list[MutableMapping[str, Any]]

QUICK = TransferLimits(min_rate=64 << 10, rate_window_s=0.5)
KERNEL = "noble/amd64/20250718/ga-24.04/generic/boot-kernel"


@pytest.fixture
def stream(tmp_path: Path, upstream_key: SigningKey, fake_upstream: FakeUpstream) -> SampleStream:
    """A one-version sample stream served by the fake upstream (at full speed until told)."""
    written = sample_stream(tmp_path / "upstream", upstream_key)
    fake_upstream.serve_directory(written.root)
    return written


async def test_a_dripping_file_fails_as_too_slow_and_the_import_ends_with_its_summary(
    tmp_path: Path,
    region_key: SigningKey,
    stream: SampleStream,
    fake_upstream: FakeUpstream,
    log_events: Events,
) -> None:
    """One file dripped out fails as too slow; the import fetches the rest and names it."""
    fake_upstream.drip(KERNEL, nbytes=256, every_s=0.05)
    async with import_env(tmp_path / "region", region_key, transfer=QUICK) as env:
        await env.add_source(fake_upstream, stream)
        summary = await env.importer.run_import("test")
    assert summary.outcome == "failed"
    assert summary.files_failed == 1
    assert summary.files_fetched == 9  # every other file arrived
    assert [e for e in summary.errors if "too slow" in e and KERNEL in e], summary.errors
    assert item_paths(fake_upstream).count("/" + KERNEL) == 1  # not retried
    [failed] = [e for e in log_events if e["event"] == "download_failed"]
    assert failed["reason"] == "too_slow"
    [finished] = [e for e in log_events if e["event"] == "import_finished"]
    assert finished["outcome"] == "failed"


async def test_a_dripping_index_fails_the_source_as_too_slow_and_the_import_ends(
    tmp_path: Path,
    region_key: SigningKey,
    stream: SampleStream,
    fake_upstream: FakeUpstream,
    log_events: Events,
) -> None:
    """A source whose index drips out fails as too slow, once, and the import ends with it."""
    fake_upstream.drip("streams/v1/index.sjson", nbytes=16, every_s=0.05)
    async with import_env(tmp_path / "region", region_key, transfer=QUICK) as env:
        source = await env.add_source(fake_upstream, stream)
        summary = await env.importer.run_import("test")
        stored = await repo_sources.get_source(env.db, source.id)
    assert summary.outcome == "failed"
    assert [e for e in summary.errors if "too slow" in e and source.url in e], summary.errors
    assert summary.files_fetched == 0
    assert len(fake_upstream.requests_for("streams/v1/index.sjson")) == 1  # not retried
    assert not [e for e in log_events if e["event"] == "metadata_fetch_retrying"]
    [refresh] = [e for e in log_events if e["event"] == "catalogue_refresh_failed"]
    assert "too slow" in refresh["reason"]
    assert stored is not None
