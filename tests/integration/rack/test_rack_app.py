"""The whole rack app in-process against a FakeRegion: events, outages, keys and secrets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.rackproto import RackStatus
from rack import web as rack_web
from rack.app import RACK, RackContext, build_app, open_rack
from rack.identity import forget_region_key
from rack.link import RegionLink
from rack.pull import run_pull
from tests.fakes.gpg import ThrowawayKey, export_public
from tests.fakes.region import FakeRegion
from tests.fakes.waiting import eventually
from tests.integration.rack.harness import rack_config

pytestmark = pytest.mark.slow

INDEX = "streams/v1/index.sjson"
KERNEL = "ubuntu/amd64/ga-24.04/noble/stable/boot-kernel"

ClientFactory = Callable[..., Any]


def count(log: list[MutableMapping[str, Any]], name: str) -> int:
    """How many captured log events are called ``name``."""
    return sum(1 for e in log if e["event"] == name)


def synced(status: RackStatus) -> bool:
    """The rack reports a synced snapshot."""
    return status.state == "synced" and status.snapshot_id is not None


@pytest.fixture
async def rack_app(
    fake_region: FakeRegion, tmp_path: Path, aiohttp_client: ClientFactory
) -> TestClient[Any, Any]:
    """The rack app, started (link and sync loop running), with a client of its web side."""
    client: TestClient[Any, Any] = await aiohttp_client(
        build_app(rack_config(fake_region, tmp_path / "rack"))
    )
    return client


async def test_a_snapshot_event_makes_the_rack_poll_at_once_and_report_its_status(
    rack_app: TestClient[Any, Any], fake_region: FakeRegion
) -> None:
    """Registration brings the first sync, events the next: snapshot polls, import re-reads."""
    status = await fake_region.wait_for_status(synced)
    assert status.images
    assert {"ubuntu/noble", "grub-efi-signed/uefi"} <= {i.name for i in status.images}
    assert status.last_sync is not None
    assert fake_region.registrations[0]["hostname"] == "rack-under-test"
    rack: RackContext = rack_app.app[RACK]
    await eventually(lambda: not rack.loop.running and fake_region.announce("snapshot") == 1)
    await eventually(lambda: fake_region.requests_for(INDEX)[-1].status == 304)
    files_before = [r for r in fake_region.stream_requests if "/2025" in r.path]
    polls, reported = len(fake_region.requests_for(INDEX)), len(fake_region.statuses)
    fake_region.announce("import")
    await eventually(lambda: len(fake_region.requests_for(INDEX)) > polls)
    await eventually(
        lambda: [s.state for _, s in fake_region.statuses[reported:]] == ["syncing", "synced"]
    )
    forced = fake_region.requests_for(INDEX)[-1]
    assert (forced.status, forced.headers.get("If-None-Match")) == (200, None)
    assert [r for r in fake_region.stream_requests if "/2025" in r.path] == files_before
    resp = await rack_app.get(f"/images/{KERNEL}")
    assert resp.status == 200
    health = await (await rack_app.get("/healthz")).json()
    assert health["ready"] is True


async def test_while_the_region_is_down_the_rack_serves_and_logs_once_then_converges(
    rack_app: TestClient[Any, Any],
    fake_region: FakeRegion,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """Polls failing in an outage log region_unreachable once; afterwards the rack reports."""
    await fake_region.wait_for_status(synced)
    rack: RackContext = rack_app.app[RACK]
    await fake_region.stop()
    for _ in range(3):
        runs = rack.loop.runs
        rack.loop.request("test")
        await eventually(lambda runs=runs: rack.loop.runs > runs)  # type: ignore[misc]
    assert (await rack_app.get(f"/images/{KERNEL}")).status == 200
    assert (await rack_app.get("/healthz")).status == 200
    assert count(log_events, "region_unreachable") == 1
    reported = len(fake_region.statuses)
    await fake_region.start()
    await eventually(lambda: any(synced(s) for _, s in fake_region.statuses[reported:]), timeout=30)
    assert count(log_events, "region_unreachable") == 1
    assert count(log_events, "region_reachable_again") == 1


async def test_a_changed_region_key_is_refused_until_the_pin_is_forgotten(
    fake_region: FakeRegion,
    tmp_path: Path,
    gpg_stranger: ThrowawayKey,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """A region offering another key gets no sync and sees the error; forgetting re-pins."""
    data = tmp_path / "rack"
    config = rack_config(fake_region, data)
    async with open_rack(config) as rack:
        await rack.link.register_once()
        assert (await run_pull(rack.pull)).outcome == "ok"
        assert rack.pull.identity.pinned is not None
        pinned = rack.pull.identity.pinned.fingerprint
    current = (data / "boot-resources" / "current").readlink()
    served = len(fake_region.stream_requests)
    fake_region.keyring = export_public(gpg_stranger)
    fake_region.fingerprint = gpg_stranger.fingerprint
    async with open_rack(config) as rack:
        rack.start()
        try:
            status = await fake_region.wait_for_status(
                lambda s: s.state == "failed" and "region key changed" in (s.error or "")
            )
            await eventually(lambda: rack.link.problem is not None)
        finally:
            await rack.stop()
        assert rack.loop.runs == 0
        refused = await run_pull(rack.pull)
    assert pinned in (status.error or "")
    assert count(log_events, "region_key_changed") == 1
    assert refused.outcome == "failed"
    assert "region key changed" in (refused.error or "")
    assert (data / "boot-resources" / "current").readlink() == current
    assert len(fake_region.stream_requests) == served

    assert await asyncio.to_thread(forget_region_key, data) == pinned
    async with open_rack(config) as rack:
        repinned = await rack.link.register_once()
    assert repinned.fingerprint == gpg_stranger.fingerprint


async def test_a_wrong_secret_is_refused_with_one_clear_log_event_while_it_keeps_retrying(
    fake_region: FakeRegion,
    tmp_path: Path,
    aiohttp_client: ClientFactory,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """Every attempt is refused; the log says so once; /healthz tells why nothing is synced."""
    config = rack_config(fake_region, tmp_path / "rack", secret="not-the-secret")
    async with open_rack(config) as rack:
        link = RegionLink(
            rack.pull.client,
            rack.pull.identity,
            rack.pull.status,
            rack.pull.health,
            hostname="r",
            rack_url="http://127.0.0.1:1",
            on_sync_request=rack.loop.request,
            backoff_base=0.01,
            backoff_cap=0.02,
        )
        task = asyncio.create_task(link.run())
        try:
            await eventually(lambda: fake_region.refused >= 4)
            app = web.Application()
            app[rack_web.BOOT_RESOURCES] = tmp_path / "rack" / "boot-resources"
            app[rack_web.PROBLEM_SOURCE] = link
            rack_web.add_routes(app)
            client: TestClient[Any, Any] = await aiohttp_client(app)
            resp = await client.get("/healthz")
            health = await resp.json()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert count(log_events, "registration_refused") == 1
    refused = next(e for e in log_events if e["event"] == "registration_refused")
    assert "shared secret" in refused["error"]
    assert resp.status == 503
    assert "shared secret" in health["reason"]
    assert rack.pull.identity.pinned is None
    assert fake_region.statuses == []
    assert fake_region.stream_requests == []
