"""A real region and two real racks on 127.0.0.1, importing from a fake upstream."""

from __future__ import annotations

import hashlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.mirror.samplestream import SampleStream
from tests.fakes.daemons import DaemonProcess, admin_key, bootsync, free_port, oauth, region_daemon
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually

API = "/MAAS/api/2.0"
FILE_SIZE = 64 << 10
NEW_SQUASHFS = "noble/amd64/20250815/squashfs"

pytestmark = pytest.mark.slow


@dataclass
class Site:
    """A region, its admin key, and two racks."""

    region: DaemonProcess
    racks: list[DaemonProcess]
    key: str


async def api(site: Site, method: str, path: str) -> Any:
    """An admin API call that must answer 200: its JSON (or text) body."""
    async with (
        aiohttp.ClientSession(headers=oauth(site.key)) as s,
        s.request(method, site.region.url + API + path) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await (resp.json() if resp.content_type == "application/json" else resp.text())


async def rack_statuses(site: Site) -> dict[str, str]:
    """Each rack's hostname → the status of its images, as list_boot_images reports it."""
    racks = await api(site, "GET", "/rackcontrollers/")
    found = {}
    for rack in racks:
        listing = await api(
            site, "GET", f"/rackcontrollers/{rack['system_id']}/?op=list_boot_images"
        )
        found[rack["hostname"]] = listing["status"]
    return found


async def all_synced(site: Site) -> bool:
    """Whether the region lists every rack, each with status ``synced``."""
    statuses = await rack_statuses(site)
    return len(statuses) == len(site.racks) and set(statuses.values()) == {"synced"}


async def wait_synced(site: Site, *, timeout: float = 60) -> None:
    """Wait until the region reports every rack synced."""
    await eventually(lambda: all_synced(site), "every rack synced", timeout=timeout, pause=0.2)


@pytest.fixture
async def site(
    fake_upstream: FakeUpstream, stream: SampleStream, data_dir: Path, tmp_path: Path
) -> AsyncIterator[Site]:
    """A region that imported ``stream``, and two racks registered with it, all started."""
    fake_upstream.serve_directory(stream.root)
    region = region_daemon(tmp_path, data_dir / "region", upstream=fake_upstream, stream=stream)
    await region.start()
    await region.wait_for_event("import_finished")
    key = await admin_key(data_dir / "region")
    secret_file = tmp_path / "rack-secret"
    secret_file.write_text(
        await bootsync("rack-secret", "--data-dir", str(data_dir / "region")) + "\n"
    )
    racks = []
    for name in ("rack-a", "rack-b"):
        rack_port = free_port()
        rack_config = tmp_path / f"{name}.toml"
        rack_config.write_text(f'[server]\nhostname = "{name}"\n[log]\nformat = "json"\n')
        rack = DaemonProcess(
            "rack",
            [
                "--config",
                str(rack_config),
                "--region",
                region.url,
                "--secret-file",
                str(secret_file),
                "--listen",
                f"127.0.0.1:{rack_port}",
                "--data-dir",
                str(data_dir / name),
            ],
            log_path=tmp_path / f"{name}.log",
            port=rack_port,
        )
        await rack.start(ready_path="/livez")
        racks.append(rack)
    built = Site(region=region, racks=racks, key=key)
    try:
        yield built
    finally:
        # built.region, not region: a test may have replaced it with a restarted one.
        for daemon in (*built.racks, built.region):
            await daemon.stop()


async def served_sha(rack: DaemonProcess, path: str) -> str | None:
    """The sha256 of what ``rack`` serves at ``/images/{path}``; None when it answers no 200."""
    async with aiohttp.ClientSession() as s, s.get(f"{rack.url}/images/{path}") as resp:
        return hashlib.sha256(await resp.read()).hexdigest() if resp.status == 200 else None


async def test_racks_register_and_serve_the_regions_images_in_the_maas_layout(
    site: Site, stream: SampleStream
) -> None:
    """Both racks sync at start; each serves the squashfs byte-identical under MAAS paths."""
    await wait_synced(site)
    expected = hashlib.sha256((stream.root / "noble/amd64/20250718/squashfs").read_bytes())
    for rack in site.racks:
        found = [
            await served_sha(rack, f"ubuntu/amd64/{sub}/noble/stable/squashfs")
            for sub in ("ga-24.04", "hwe-24.04")
        ]
        assert found == [expected.hexdigest()] * 2
    listing = await api(site, "GET", "/rackcontrollers/")
    assert {r["hostname"] for r in listing} == {"rack-a", "rack-b"}
    assert all(r["last_image_sync"] for r in listing)


async def test_a_region_import_reaches_both_racks_through_the_event_not_the_timer(
    site: Site, fake_upstream: FakeUpstream, newer_stream: SampleStream
) -> None:
    """A new upstream version is imported and both racks pull it because the region told them."""
    await wait_synced(site)
    fake_upstream.serve_directory(newer_stream.root)
    assert (
        await api(site, "POST", "/boot-resources/?op=import") == "Import of boot resources started"
    )
    expected = hashlib.sha256((newer_stream.root / NEW_SQUASHFS).read_bytes()).hexdigest()

    async def both_have_it() -> bool:
        found = [
            await served_sha(r, "ubuntu/amd64/ga-24.04/noble/stable/squashfs") for r in site.racks
        ]
        return found == [expected, expected]

    await eventually(both_have_it, "the new squashfs on both racks", timeout=60, pause=0.2)
    for rack in site.racks:
        # current switches just before pull_finished is logged: wait for the line.
        async def pulled_on_event(rack: DaemonProcess = rack) -> bool:
            reasons = [
                e["reason"]
                for e in rack.events("pull_finished")
                if e["outcome"] == "ok" and e["files_fetched"] > 0
            ]
            return len(reasons) >= 2 and "snapshot" in reasons[-1]

        await eventually(pulled_on_event, "a pull on the snapshot event", timeout=10, pause=0.2)
    await wait_synced(site)


async def test_a_second_import_of_the_same_stream_moves_no_file_to_any_rack(
    site: Site, fake_upstream: FakeUpstream
) -> None:
    """Re-importing an unchanged upstream fetches nothing upstream and nothing on the racks."""
    await wait_synced(site)
    upstream_files = [r for r in fake_upstream.requests if not r.path.startswith("/streams/")]
    fetched = [len(r.events("download_finished")) for r in site.racks]
    await api(site, "POST", "/boot-resources/?op=import")
    await site.region.wait_for_event("import_finished", count=2)
    await api(site, "POST", "/rackcontrollers/?op=import_boot_images")
    for rack in site.racks:
        await rack.wait_for_event("pull_finished", count=2)
    assert [
        r for r in fake_upstream.requests if not r.path.startswith("/streams/")
    ] == upstream_files
    assert [len(r.events("download_finished")) for r in site.racks] == fetched


async def test_racks_keep_serving_while_the_region_is_down_and_converge_when_it_returns(
    site: Site,
) -> None:
    """With the region stopped the racks still serve; restarted, both report synced again."""
    await wait_synced(site)
    path = "ubuntu/amd64/ga-24.04/noble/stable/boot-kernel"
    before = [await served_sha(r, path) for r in site.racks]
    await site.region.stop(signal.SIGTERM)
    for rack in site.racks:  # each rack has noticed the region is gone
        await rack.wait_for_event("region_unreachable", timeout=30)
    assert [await served_sha(r, path) for r in site.racks] == before
    assert all(before)
    site.region = site.region.again()
    await site.region.start()
    await wait_synced(site, timeout=90)
    for rack in site.racks:
        assert len(rack.events("region_unreachable")) == 1
