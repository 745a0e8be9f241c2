"""What operators watch and do: /metrics and /healthz on both daemons, and draining at SIGTERM.

A real region app imports a signed sample stream from a fake upstream, a real
rack app registers with it and pulls, both in this process, and their
``/metrics`` are scraped like Prometheus would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from common.mirror.samplestream import SampleStream
from common.ops import metrics
from rack import app as rack_app
from rack.config import RackConfig
from region import app as region_app
from region.config import RegionConfig
from region.context import CTX
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.slow

KERNEL = "noble/amd64/20250718/ga-24.04/generic/boot-kernel"
FILE_SIZE = 16 << 10  # the integration ``stream``: one version of each product, 16 KiB files
VERSIONS = 1
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@dataclass
class Events:
    """Every log event of the test, as the daemons' tap sees them (whatever the level)."""

    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, event: str, fields: Mapping[str, Any]) -> None:
        self.seen.append((event, dict(fields)))

    def named(self, name: str) -> list[dict[str, Any]]:
        """The fields of each event called ``name``."""
        return [f for e, f in self.seen if e == name]

    async def wait_for(self, name: str, count: int = 1, timeout: float = 30) -> dict[str, Any]:
        """The ``count``-th event called ``name``, once it happened."""
        async with asyncio.timeout(timeout):
            while len(self.named(name)) < count:
                await asyncio.sleep(0.02)
        return self.named(name)[count - 1]


@pytest.fixture
def events() -> Iterator[Events]:
    """Log events tapped into the metrics (as the daemons' main does) and recorded."""
    saved = structlog.get_config()
    recorder = Events()
    metrics.tap_log_events([metrics.record_event, recorder], level="info")
    yield recorder
    structlog.configure(**saved)


@pytest.fixture
async def region(
    events: Events,
    fake_upstream: FakeUpstream,
    stream: SampleStream,
    data_dir: Path,
    aiohttp_client: ClientFactory,
) -> TestClient[Any, Any]:
    """The region app on 127.0.0.1, its first import (of ``stream``) started."""
    fake_upstream.serve_directory(stream.root)
    config = RegionConfig(
        data_dir=data_dir / "region",
        default_source_url=fake_upstream.url("/"),
        default_keyring=stream.keyring,
        shutdown_grace_s=0,
    )
    return await aiohttp_client(await region_app.build_app(config))


async def scrape(
    client: TestClient[Any, Any],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) → value."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await resp.text())
        for s in family.samples
    }


def delta(
    after: Mapping[Any, float], before: Mapping[Any, float], name: str, **labels: str
) -> float:
    """How much the sample ``name{labels}`` grew between two scrapes."""
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_an_import_and_a_pull_move_the_counters_and_both_daemons_report_their_state(
    region: TestClient[Any, Any], events: Events, data_dir: Path, aiohttp_client: ClientFactory
) -> None:
    """Imports, pulls, downloads, verified files, bytes, rack states and ages all show up."""
    before = await scrape(region)
    summary = await events.wait_for("import_finished")
    assert summary["outcome"] == "ok"
    after = await scrape(region)
    assert delta(after, before, "bootsync_imports_total", outcome="ok") == 1
    assert delta(after, before, "bootsync_import_duration_seconds_count") == 1
    fetched = summary["files_fetched"]
    assert fetched > 0
    assert delta(after, before, "bootsync_downloads_total", outcome="ok") == fetched
    assert delta(after, before, "bootsync_files_verified_total") == fetched
    assert delta(after, before, "bootsync_downloaded_bytes_total") == summary["bytes"]
    assert ("bootsync_seconds_since_last_successful_sync", ()) in after
    assert ("bootsync_snapshot_age_seconds", ()) in after

    ctx = region.app[CTX]
    assert ctx.racks is not None
    config = RackConfig(
        region_urls=(str(region.make_url("")).rstrip("/"),),
        secret=ctx.racks.secret,
        data_dir=data_dir / "rack",
        listen="127.0.0.1:5248",
        hostname="rack-1",
        shutdown_grace_s=0,
    )
    rack = await aiohttp_client(rack_app.build_app(config))
    pulled = await events.wait_for("pull_finished")
    assert pulled["outcome"] == "ok"
    rack_metrics = await scrape(rack)
    assert delta(rack_metrics, after, "bootsync_pulls_total", outcome="ok") == 1
    assert (
        delta(rack_metrics, after, "bootsync_downloads_total", outcome="ok")
        == pulled["files_fetched"]
    )
    assert rack_metrics[("bootsync_sync_state", (("state", "synced"),))] == 1
    assert rack_metrics[("bootsync_region_reachable", ())] == 1
    assert ("bootsync_snapshot_age_seconds", ()) in rack_metrics

    await events.wait_for("rack_status_reported")
    system_id = rack.app[rack_app.RACK].pull.identity.system_id
    assert system_id is not None
    who = (("hostname", "rack-1"), ("system_id", system_id))
    at_region = await scrape(region)
    assert at_region[("bootsync_rack_sync_state", tuple(sorted((*who, ("state", "synced")))))] == 1
    assert at_region[("bootsync_rack_sync_state", tuple(sorted((*who, ("state", "failed")))))] == 0
    assert at_region[("bootsync_rack_connected", who)] == 1
    assert ("bootsync_rack_seconds_since_last_sync", who) in at_region


async def test_bytes_served_count_the_body_of_full_and_range_responses_only(
    region: TestClient[Any, Any], events: Events
) -> None:
    """200 counts the file, 206 the range, HEAD and 404 nothing."""
    await events.wait_for("import_finished")
    path = "/MAAS/images-stream/streams/v1/index.json"
    before = await scrape(region)
    whole = await (await region.get(path)).read()
    part = await region.get(path, headers={"Range": "bytes=10-19"})
    assert (part.status, len(await part.read())) == (206, 10)
    assert (await region.head(path)).status == 200
    assert (await region.get("/MAAS/images-stream/nothing-here")).status == 404
    after = await scrape(region)
    assert delta(after, before, "bootsync_served_bytes_total") == len(whole) + 10
    assert delta(after, before, "bootsync_served_files_total") == 2


async def test_a_sha256_mismatch_counts_as_a_verification_failure(
    region: TestClient[Any, Any], events: Events, fake_upstream: FakeUpstream
) -> None:
    """A file whose bytes never match its signed sha256 shows under its reason."""
    await events.wait_for("import_finished")
    before = await scrape(region)
    fake_upstream.flip_byte(KERNEL, 100, times=2)  # the downloader retries a mismatch once
    sha = next(f["sha256"] for f in events.named("download_finished") if KERNEL in f["url"])
    for blob in region.app[CTX].store.root.rglob(f"{sha}*"):
        blob.unlink()  # the kernel is missing again: the next import fetches it
    summary = await region.app[CTX].importer.run_import("test")
    assert summary.files_failed == 1
    after = await scrape(region)
    assert (
        delta(after, before, "bootsync_verification_failures_total", reason="sha256_mismatch") == 1
    )
    assert delta(after, before, "bootsync_downloads_total", outcome="failed") == 1
    assert delta(after, before, "bootsync_imports_total", outcome="failed") == 1


async def test_healthz_is_ready_then_503_stopping_once_draining_begins(
    region: TestClient[Any, Any], events: Events
) -> None:
    """Load balancers see 200 while the region serves, 503 with a reason once it drains."""
    await events.wait_for("import_finished")
    ready = await region.get("/healthz")
    assert (ready.status, (await ready.json())["ready"]) == (200, True)
    await region_app.drain(region.app, grace_s=0)
    stopping = await region.get("/healthz")
    assert (stopping.status, await stopping.json()) == (503, {"ready": False, "reason": "stopping"})


async def idle(importer: Any) -> None:
    """Wait until the start-up import's task has ended."""
    async with asyncio.timeout(10):
        while importer.is_importing():
            await asyncio.sleep(0.01)


async def test_draining_lets_a_running_import_finish_within_the_grace_period(
    region: TestClient[Any, Any], events: Events, fake_upstream: FakeUpstream
) -> None:
    """An import slowed by a short stall still ends ok: it is not cancelled at SIGTERM."""
    await events.wait_for("import_finished")
    importer = region.app[CTX].importer
    await idle(importer)  # the summary is logged just before the import's task ends
    fake_upstream.stall("streams/v1/index.sjson", after_bytes=10, seconds=0.5)
    assert importer.start(reason="test")
    await events.wait_for("import_started", count=2)
    await region_app.drain(region.app, grace_s=30)
    assert not importer.is_importing()
    assert events.named("import_finished")[1]["outcome"] == "ok"
    waiting = events.named("shutdown_waiting")
    assert [(w["work"], w["grace_s"]) for w in waiting] == [("import", 30)]
    assert not events.named("shutdown_grace_expired")


async def test_draining_cancels_an_import_still_running_after_the_grace_period(
    region: TestClient[Any, Any], events: Events, fake_upstream: FakeUpstream
) -> None:
    """A stalled import is cancelled once the grace period ends; the scheduler is stopped."""
    await events.wait_for("import_finished")
    importer = region.app[CTX].importer
    await idle(importer)  # the summary is logged just before the import's task ends
    fake_upstream.stall("streams/v1/index.sjson", after_bytes=10, seconds=60)
    assert importer.start(reason="test")
    await events.wait_for("import_started", count=2)
    await region_app.drain(region.app, grace_s=0.2)
    assert not importer.is_importing()
    assert events.named("import_finished")[1]["outcome"] == "cancelled"
    assert events.named("shutdown_grace_expired")[0]["work"] == "import"
    assert not region.app[region_app.AUTO_IMPORT].job()


async def test_a_draining_rack_starts_no_new_pull(
    region: TestClient[Any, Any], events: Events, data_dir: Path, aiohttp_client: ClientFactory
) -> None:
    """After drain, a sync request is skipped (logged) instead of pulling."""
    await events.wait_for("import_finished")
    ctx = region.app[CTX]
    assert ctx.racks is not None
    config = RackConfig(
        region_urls=(str(region.make_url("")).rstrip("/"),),
        secret=ctx.racks.secret,
        data_dir=data_dir / "rack",
        listen="127.0.0.1:5248",
        hostname="rack-1",
    )
    rack = await aiohttp_client(rack_app.build_app(config))
    await events.wait_for("pull_finished")
    await rack_app.drain(rack.app, grace_s=5)
    rack.app[rack_app.RACK].loop.request("test")
    skipped = await events.wait_for("pull_skipped")
    assert skipped["trigger"] == "test"
    assert len(events.named("pull_started")) == 1
