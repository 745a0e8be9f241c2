"""bootsync-rackd as a real process: killed mid-pull, restarted, never serving a partial file."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.daemons import DaemonProcess, free_port
from tests.fakes.region import FakeRegion
from tests.fakes.waiting import eventually
from tests.integration.rack.harness import published_files

pytestmark = pytest.mark.slow

FILE_SIZE = 2 << 20  # above the downloader's 1 MiB write batch, so a partial reaches the disk
SQUASHFS = "ubuntu/amd64/ga-24.04/noble/20250718/squashfs"
WATCHED = {  # rack path → stream path
    "ubuntu/amd64/ga-24.04/noble/stable/squashfs": SQUASHFS,
    "ubuntu/amd64/hwe-24.04/noble/stable/squashfs": SQUASHFS,
    "ubuntu/amd64/ga-24.04/noble/stable/boot-kernel": "ubuntu/amd64/ga-24.04/noble/20250718/boot-kernel",
    "ubuntu/amd64/hwe-24.04/noble/stable/boot-initrd": "ubuntu/amd64/hwe-24.04/noble/20250718/boot-initrd",
    "bootloader/pxe/i386/syslinux.tar.xz": "pxelinux/i386/generic/pxe/20250718.0/syslinux.tar.xz",
}


def rack_process(
    fake: FakeRegion, data_dir: Path, tmp_path: Path, port: int, log_name: str
) -> DaemonProcess:
    """``python -m rack`` for ``fake``, logging JSON to ``tmp_path/log_name``."""
    secret = tmp_path / "rack-secret"
    secret.write_text(fake.secret + "\n")
    config = tmp_path / "rackd.toml"
    config.write_text(
        '[sync]\nconcurrency = 4\n[log]\nformat = "json"\n[server]\nhostname = "killed-rack"\n'
    )
    return DaemonProcess(
        "rack",
        [
            "--config",
            str(config),
            "--region",
            fake.url,
            "--secret-file",
            str(secret),
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        log_path=tmp_path / log_name,
        port=port,
    )


async def watch(
    url: str, expected: dict[str, str], seen: dict[str, set[int]], violations: list[str]
) -> None:
    """Fetch the watched paths over and over; all but 404 or a complete file is a violation."""
    async with aiohttp.ClientSession() as session:
        while True:
            for rack_path, sha256 in expected.items():
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(f"{url}/images/{rack_path}") as resp:
                        body = await resp.read()
                        seen.setdefault(rack_path, set()).add(resp.status)
                        if resp.status == 200 and hashlib.sha256(body).hexdigest() != sha256:
                            violations.append(f"{rack_path}: partial or wrong ({len(body)} B)")
                        elif resp.status not in (200, 404):
                            violations.append(f"{rack_path}: HTTP {resp.status}")
            await asyncio.sleep(0.02)


async def test_kill_9_mid_pull_then_restart_completes_without_refetching_finished_files(
    fake_region: FakeRegion, region: DaemonProcess, tmp_path: Path
) -> None:
    """Only the stalled file is asked for again (with Range); /images/ never serves a part."""
    published = await published_files(region.url)
    expected = {rack: published[stream] for rack, stream in WATCHED.items()}
    fake_region.stall(SQUASHFS, after_bytes=FILE_SIZE * 3 // 4, seconds=120)
    data = tmp_path / "rack"
    port = free_port()
    seen: dict[str, set[int]] = {}
    violations: list[str] = []
    watcher = asyncio.create_task(watch(f"http://127.0.0.1:{port}", expected, seen, violations))
    try:
        first = rack_process(fake_region, data, tmp_path, port, "rackd-1.log")
        await first.start(ready_path="/livez")
        planned = (await first.wait_for_event("pull_planned"))[0]
        await first.wait_for_event("download_finished", count=planned["files"] - 1)
        partial = data / "cache" / "tmp" / f"{published[SQUASHFS]}.part"
        # the stalled file's first write batch (1 MiB) reaches the disk
        await eventually(lambda: partial.exists() and partial.stat().st_size >= 1 << 20)
        await first.stop(signal.SIGKILL)
        fake_region.release_stalls()
        finished = {
            e["url"].split("/images-stream/", 1)[1] for e in first.events("download_finished")
        }
        assert SQUASHFS not in finished
        assert not first.events("snapshot_published")

        second = rack_process(fake_region, data, tmp_path, port, "rackd-2.log")
        await second.start(ready_path="/livez")
        summary = (await second.wait_for_event("pull_finished"))[0]
        await eventually(
            lambda: all(200 in seen.get(path, set()) for path in expected),
            "every watched file served",
            timeout=10,
        )
        assert await second.stop() == 0
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert summary["outcome"] == "ok", summary
    assert summary["files_fetched"] == 1
    assert violations == []
    for path in finished:
        assert len(fake_region.requests_for(path)) == 1, path
    squashfs = fake_region.requests_for(SQUASHFS)
    assert len(squashfs) == 2
    assert squashfs[0].range is None
    assert squashfs[1].range is not None
    assert squashfs[1].range.startswith("bytes=")
    assert int(squashfs[1].range[6:].rstrip("-")) >= 1 << 20
    resumed = second.events("download_finished")
    assert [e["resumed_from"] for e in resumed] == [partial_size(squashfs[1].range)]


def partial_size(range_header: str) -> int:
    """The offset a ``bytes=N-`` Range header resumes from."""
    return int(range_header.removeprefix("bytes=").rstrip("-"))


async def test_sigterm_mid_pull_stops_promptly_with_a_cancelled_summary(
    fake_region: FakeRegion, tmp_path: Path
) -> None:
    """A stop signal cancels the running pull (logged as cancelled), and the daemon exits 0."""
    fake_region.stall(SQUASHFS, after_bytes=FILE_SIZE // 2, seconds=120)
    rack = rack_process(fake_region, tmp_path / "rack", tmp_path, free_port(), "rackd.log")
    await rack.start(ready_path="/livez")
    planned = (await rack.wait_for_event("pull_planned"))[0]
    await rack.wait_for_event("download_finished", count=planned["files"] - 1)
    assert await rack.stop(signal.SIGTERM, timeout=10) == 0
    summary = rack.events("pull_finished")
    assert [e["outcome"] for e in summary] == ["cancelled"]
    assert rack.events("rackd_stopped")
    assert not (tmp_path / "rack" / "boot-resources" / "current").exists()
