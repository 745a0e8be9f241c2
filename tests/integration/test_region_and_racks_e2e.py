"""A real region and two real racks on 127.0.0.1, importing from a fake upstream."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.trust.keyrings import SigningKey
from tests.fakes.daemons import REPO, DaemonProcess, free_port
from tests.fakes.upstream import FakeUpstream

API = "/MAAS/api/2.0"
FILE_SIZE = 64 << 10
NEW_SQUASHFS = "noble/amd64/20250815/squashfs"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory, upstream_key: SigningKey) -> SampleStream:
    return write_sample_stream(
        tmp_path_factory.mktemp("up"), file_size=FILE_SIZE, signing_key=upstream_key
    )


@pytest.fixture(scope="module")
def newer_stream(
    tmp_path_factory: pytest.TempPathFactory, upstream_key: SigningKey
) -> SampleStream:
    return write_sample_stream(
        tmp_path_factory.mktemp("up2"),
        file_size=FILE_SIZE,
        newest=date(2025, 8, 15),
        signing_key=upstream_key,
    )


@dataclass
class Site:
    """A region, its admin key, and two racks."""

    region: DaemonProcess
    racks: list[DaemonProcess]
    key: str
    region_data: Path
    region_args: list[str]


def oauth(key: str) -> dict[str, str]:
    consumer, token, secret = key.split(":")
    return {
        "Authorization": (
            f'OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", '
            f'oauth_consumer_key="{consumer}", oauth_token="{token}", '
            f'oauth_signature="%26{secret}", oauth_nonce="1", oauth_timestamp="1"'
        )
    }


async def api(site: Site, method: str, path: str) -> Any:
    async with (
        aiohttp.ClientSession(headers=oauth(site.key)) as s,
        s.request(method, site.region.url + API + path) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await (resp.json() if resp.content_type == "application/json" else resp.text())


async def cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.cli",
        "--log-level",
        "warning",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


async def rack_statuses(site: Site) -> dict[str, str]:
    racks = await api(site, "GET", "/rackcontrollers/")
    found = {}
    for rack in racks:
        listing = await api(
            site, "GET", f"/rackcontrollers/{rack['system_id']}/?op=list_boot_images"
        )
        found[rack["hostname"]] = listing["status"]
    return found


async def until(check: Any, *, timeout: float = 60) -> None:
    """Poll the async ``check()`` until it returns true."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.2)


async def all_synced(site: Site) -> bool:
    statuses = await rack_statuses(site)
    return len(statuses) == len(site.racks) and set(statuses.values()) == {"synced"}


@pytest.fixture
async def site(
    fake_upstream: FakeUpstream, stream: SampleStream, tmp_path: Path
) -> AsyncIterator[Site]:
    fake_upstream.serve_directory(stream.root)
    short = Path(tempfile.mkdtemp(prefix="bse", dir="/tmp"))
    config = tmp_path / "regiond.toml"
    config.write_text(
        f'[import]\ndefault_source_url = "{fake_upstream.url("/")}"\n'
        f'default_keyring = "{stream.keyring}"\n[log]\nformat = "json"\n'
    )
    port = free_port()
    region_args = [
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(short / "region"),
    ]
    region = DaemonProcess("region", region_args, log_path=tmp_path / "regiond.log", port=port)
    await region.start()
    await region.wait_for_event("import_finished")
    key = await cli("apikey", "--username", "admin", "--admin", "--data-dir", str(short / "region"))
    secret_file = tmp_path / "rack-secret"
    secret_file.write_text(await cli("rack-secret", "--data-dir", str(short / "region")) + "\n")
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
                str(short / name),
            ],
            log_path=tmp_path / f"{name}.log",
            port=rack_port,
        )
        await rack.start(ready_path="/livez")
        racks.append(rack)
    built = Site(
        region=region, racks=racks, key=key, region_data=short / "region", region_args=region_args
    )
    try:
        yield built
    finally:
        # built.region, not region: a test may have replaced it with a restarted one.
        for daemon in (*built.racks, built.region):
            await daemon.stop()
        shutil.rmtree(short, ignore_errors=True)


async def served_sha(rack: DaemonProcess, path: str) -> str | None:
    async with aiohttp.ClientSession() as s, s.get(f"{rack.url}/images/{path}") as resp:
        return hashlib.sha256(await resp.read()).hexdigest() if resp.status == 200 else None


async def test_racks_register_and_serve_the_regions_images_in_the_maas_layout(
    site: Site, stream: SampleStream
) -> None:
    """Both racks sync at start; each serves the squashfs byte-identical under MAAS paths."""
    await until(lambda: all_synced(site))
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
    await until(lambda: all_synced(site))
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

    await until(both_have_it)
    for rack in site.racks:
        # current switches just before pull_finished is logged: wait for the line.
        async def pulled_on_event(rack: DaemonProcess = rack) -> bool:
            reasons = [
                e["reason"]
                for e in rack.events("pull_finished")
                if e["outcome"] == "ok" and e["files_fetched"] > 0
            ]
            return len(reasons) >= 2 and "snapshot" in reasons[-1]

        await until(pulled_on_event, timeout=10)
    await until(lambda: all_synced(site))


async def test_a_second_import_of_the_same_stream_moves_no_file_to_any_rack(
    site: Site, fake_upstream: FakeUpstream
) -> None:
    """Re-importing an unchanged upstream fetches nothing upstream and nothing on the racks."""
    await until(lambda: all_synced(site))
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
    await until(lambda: all_synced(site))
    path = "ubuntu/amd64/ga-24.04/noble/stable/boot-kernel"
    before = [await served_sha(r, path) for r in site.racks]
    await site.region.stop(signal.SIGTERM)
    await asyncio.sleep(1)
    assert [await served_sha(r, path) for r in site.racks] == before
    assert all(before)
    site.region = DaemonProcess(
        "region", site.region_args, log_path=site.region.log_path, port=site.region.port
    )
    await site.region.start()
    await until(lambda: all_synced(site), timeout=90)
    for rack in site.racks:
        assert len(rack.events("region_unreachable")) == 1
