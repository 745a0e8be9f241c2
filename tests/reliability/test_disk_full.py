"""A real region on a small tmpfs: a full disk is a named failure, and the next import heals.

Two runs, each on a tmpfs mounted for the test (skipped, with the reason, where
this machine cannot mount one):

* a 20 MiB disk, smaller than any import needs with the store's reserve: the
  import fails before any download as ``no_space`` with the bytes it needed
  and those free; once the disk grows (remounted larger) the next import succeeds;
* a disk with room for the import, filled by another writer while files are
  downloading: the import ends as ``no_space`` (ENOSPC, or SQLite's "database or
  disk is full"), not a traceback; once the other writer's file is gone, the
  next import succeeds and fetches again none of the files already held.

Promised in both: the state stays correct at the failure and after (every
blob hashes to its name, the published snapshot is complete and verifies).
"""

from __future__ import annotations

import asyncio
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.trust.keyrings import SigningKey
from tests.fakes.daemons import DaemonProcess, region_daemon
from tests.fakes.streams import short_dir
from tests.fakes.upstream import FakeUpstream
from tests.reliability.checks import held_blobs, published_versions, region_problems
from tests.reliability.streams import pace, refetched, served_items, stream_items

pytestmark = pytest.mark.slow

FILE_SIZE = 1 << 20
SELECTED = ("noble/amd64/", "bootloaders/")


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory, upstream_key: SigningKey) -> SampleStream:
    """A one-version stream of 1 MiB files (the region's selection: about 5 MiB)."""
    return write_sample_stream(
        tmp_path_factory.mktemp("up"), file_size=FILE_SIZE, versions=1, signing_key=upstream_key
    )


def _mount(disk: Path, size: str, *, remount: bool = False) -> subprocess.CompletedProcess[str]:
    options = f"remount,size={size}" if remount else f"size={size}"
    return subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )


class Disk:
    """A tmpfs mounted at ``path``; :meth:`grow` remounts it larger."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def grow(self, size: str) -> None:
        """Remount with ``size`` (the files stay)."""
        done = _mount(self.path, size, remount=True)
        assert done.returncode == 0, done.stderr

    def fill(self) -> Path:
        """Write a ballast file until not one byte is left; its path."""
        ballast = self.path / "ballast"
        with ballast.open("wb", buffering=0) as f:
            for chunk in (1 << 20, 4096, 1):
                block = b"\0" * chunk
                try:
                    while True:
                        f.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        return ballast


def small_disk(size: str) -> Iterator[Disk]:
    """A tmpfs of ``size`` mounted for the test, or a skip saying why it cannot be."""
    with short_dir("bsdisk") as path:
        done = _mount(path, size)
        if done.returncode != 0:
            pytest.skip(
                f"cannot mount a {size} tmpfs here: {done.stderr.strip() or done.returncode}"
            )
        try:
            yield Disk(path)
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def tiny_disk() -> Iterator[Disk]:
    """A 20 MiB tmpfs: less than the store's reserve (64 MiB) plus any import."""
    yield from small_disk("20m")


@pytest.fixture
def roomy_disk() -> Iterator[Disk]:
    """A 100 MiB tmpfs: room for the reserve and the import, until something fills it."""
    yield from small_disk("100m")


def crashes(daemon: DaemonProcess) -> list[str]:
    """Log lines that mean a bug: a traceback, or the crash events."""
    return [
        line
        for line in daemon.log_text().splitlines()
        if "Traceback" in line
        or '"exception"' in line
        or '"import_failed"' in line
        or '"import_settle_failed"' in line
    ]


async def finished(daemon: DaemonProcess, count: int = 1) -> dict[str, Any]:
    """The ``count``-th import_finished event of ``daemon``."""
    return (await daemon.wait_for_event("import_finished", count=count, timeout=90))[count - 1]


async def test_a_disk_too_small_fails_the_import_as_no_space_and_a_grown_disk_heals(
    tiny_disk: Disk, stream: SampleStream, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """On 20 MiB: no_space with need and free, nothing corrupt; remounted at 120 MiB: ok."""
    fake_upstream.serve_directory(stream.root)
    data = tiny_disk.path / "region"
    daemon = region_daemon(tmp_path, data, upstream=fake_upstream, stream=stream)
    await daemon.start()
    try:
        summary = await finished(daemon)
        [no_space] = daemon.events("import_no_space")
    finally:
        await daemon.stop()
    assert (summary["outcome"], summary["failure"]) == ("failed", "no_space"), summary
    assert no_space["need"] > no_space["free"]
    assert summary["space_needed"] == no_space["need"]
    assert not crashes(daemon), crashes(daemon)
    assert not await region_problems(data)

    await asyncio.to_thread(tiny_disk.grow, "120m")
    again = daemon.again()
    await again.start()
    try:
        healed = await finished(again, count=2)
    finally:
        await again.stop()
    assert healed["outcome"] == "ok", healed
    assert not await region_problems(data)
    assert await published_versions(data) == {"20250718"}


async def test_a_disk_filling_mid_import_fails_it_as_no_space_and_the_next_import_heals(
    roomy_disk: Disk, stream: SampleStream, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Filled while files download: no_space, nothing corrupt; emptied: ok, nothing refetched."""
    items = stream_items(stream.root, prefixes=SELECTED)
    fake_upstream.serve_directory(stream.root)
    pace(fake_upstream, items, piece=64 << 10, every_s=0.05)
    data = roomy_disk.path / "region"
    daemon = region_daemon(tmp_path, data, upstream=fake_upstream, stream=stream)
    await daemon.start()
    try:
        await daemon.wait_for_event("download_finished")  # some files are in, others coming
        ballast = await asyncio.to_thread(roomy_disk.fill)
        summary = await finished(daemon)
    finally:
        await daemon.stop()
    assert (summary["outcome"], summary["failure"]) == ("failed", "no_space"), summary
    assert daemon.events("import_no_space")
    assert not crashes(daemon), crashes(daemon)
    assert not await region_problems(data)
    held = set(await asyncio.to_thread(held_blobs, data / "store"))
    before = served_items(fake_upstream)

    await asyncio.to_thread(ballast.unlink)
    again = daemon.again()
    await again.start()
    try:
        healed = await finished(again, count=2)
    finally:
        await again.stop()
    assert healed["outcome"] == "ok", healed
    assert not await region_problems(data)
    assert await published_versions(data) == {"20250718"}
    assert not refetched(before, served_items(fake_upstream), items, held)
