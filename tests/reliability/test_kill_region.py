"""kill -9 of a real ``bootsync-regiond`` at a random moment of an import, then a restart.

Each trial starts from an empty data directory or from one holding an older
import (the trial's RNG chooses), serves a newer stream slowly enough that the
moment falls inside the transfer, kills the region, checks the state it left,
restarts it and lets its start-up import finish. Promised: nothing on disk is
corrupt at the kill or after (every blob hashes to its name, the published
snapshot is complete and its signed stream verifies), the restarted import
ends ok with the newer images published, and no file the region held at the
kill is fetched again (others at most once more, resumed).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.trust.keyrings import SigningKey
from region.images.publish import KEYRING_NAME
from tests.fakes.daemons import region_daemon
from tests.fakes.streams import short_dir
from tests.fakes.upstream import FakeUpstream
from tests.integration.region.import_harness import import_env
from tests.reliability.checks import held_blobs, published_versions, region_problems
from tests.reliability.processes import Moment, kill_at, launch, relaunchable
from tests.reliability.streams import item_bytes, pace, refetched, served_items, stream_items

pytestmark = pytest.mark.slow

FILE_SIZE = 192 << 10
NEWER = date(2025, 8, 15)
SELECTED = ("noble/amd64/", "bootloaders/")  # the region's default selection, and bootloaders


@pytest.fixture(scope="module")
def streams(
    tmp_path_factory: pytest.TempPathFactory, upstream_key: SigningKey
) -> tuple[SampleStream, SampleStream]:
    """An older and a newer one-version stream, both signed by the upstream key."""
    old = write_sample_stream(
        tmp_path_factory.mktemp("old"), file_size=FILE_SIZE, versions=1, signing_key=upstream_key
    )
    new = write_sample_stream(
        tmp_path_factory.mktemp("new"),
        file_size=FILE_SIZE,
        versions=1,
        newest=NEWER,
        signing_key=upstream_key,
    )
    return old, new


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """The region's data directory, short (the gpg-agent socket lives in it)."""
    with short_dir("bsr") as path:
        yield path


async def import_older(data: Path, upstream: FakeUpstream, old: SampleStream) -> None:
    """Import ``old`` into ``data`` the daemon's way (same code, in this process), to upgrade."""
    upstream.serve_directory(old.root)
    key = await asyncio.to_thread(SigningKey.open, data / "gnupg")
    try:
        await asyncio.to_thread((data / KEYRING_NAME).write_bytes, await key.aexport_public())
        async with import_env(data, key) as env:
            await env.add_source(upstream, old)
            summary = await env.importer.run_import("older images")
        assert summary.outcome == "ok", summary.errors
    finally:
        await asyncio.to_thread(key.close)


def make_region_key(data: Path) -> None:
    """The key the daemon will open as its own (made here so an older import is signed by it)."""
    SigningKey.create(data / "gnupg", name="bootsync region", email="r@test.invalid").close()


@pytest.mark.kill_trials(ci=3)
async def test_a_region_killed_mid_import_restarts_intact_and_fetches_nothing_twice(
    trial_rng: random.Random,
    streams: tuple[SampleStream, SampleStream],
    fake_upstream: FakeUpstream,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    """After kill -9 at a random moment and a restart: nothing corrupt, nothing fetched twice."""
    old, new = streams
    items = stream_items(new.root, prefixes=SELECTED)
    upgrade = trial_rng.random() < 0.6
    moment = Moment.draw(trial_rng, sum(i.size for i in items.values()))
    print(f"{'upgrade from an older import' if upgrade else 'empty'}; {moment}")
    await asyncio.to_thread(make_region_key, data_dir)
    if upgrade:
        await import_older(data_dir, fake_upstream, old)
    fake_upstream.serve_directory(new.root)
    pace(fake_upstream, items, piece=16 << 10, every_s=0.03)
    daemon = region_daemon(tmp_path, data_dir, upstream=fake_upstream, stream=new)

    first = relaunchable(daemon, tmp_path / "killed.log")
    start = served_items(fake_upstream)
    await launch(first)
    assert first.proc is not None
    killed = await kill_at(
        first.proc,
        moment,
        served=lambda: item_bytes(fake_upstream, start),
        finished=lambda: bool(first.events("import_finished")),
    )
    at_kill = await region_problems(data_dir)
    assert not at_kill, at_kill
    held = set(await asyncio.to_thread(held_blobs, data_dir / "store"))
    print(
        f"killed={killed}: {item_bytes(fake_upstream, start)} item bytes served, "
        f"{len(held & {i.sha256 for i in items.values()})}/{len(items)} new files held, "
        f"import finished before the kill: {bool(first.events('import_finished'))}"
    )
    before = served_items(fake_upstream)

    second = relaunchable(daemon, tmp_path / "restarted.log")
    await second.start()
    try:
        [summary] = await second.wait_for_event("import_finished", timeout=120)
    finally:
        await second.stop()
    assert summary["outcome"] == "ok", summary
    after = await region_problems(data_dir)
    assert not after, after
    assert not refetched(before, served_items(fake_upstream), items, held)
    assert await published_versions(data_dir) == {NEWER.strftime("%Y%m%d")}
