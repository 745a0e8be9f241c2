"""kill -9 of a real ``bootsync-rackd`` at a random moment of a pull, then a restart.

One real region serves the whole module: it imports an older stream, a seed
rack syncs it fully, then the region imports a newer stream. Each trial starts
a rack either fresh or from a copy of the seed rack (an update; the trial's
RNG chooses), pulling through a proxy that paces and counts the stream, kills
it at its moment, checks its data directory, restarts it and waits for its
pull. Promised: nothing on the rack is corrupt at the kill or after (every
cached blob hashes to its name, the ``current`` snapshot is complete), the
restarted rack serves the region's newer images, and no file the rack held at
the kill is fetched again (others at most once more, resumed).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.trust.keyrings import SigningKey
from region.images.publish import PRODUCTS_PATH
from simplestreams import flatten, parse_products
from tests.fakes.daemons import (
    DaemonProcess,
    admin_key,
    bootsync,
    free_port,
    oauth,
    region_daemon,
)
from tests.fakes.streams import short_dir
from tests.fakes.upstream import FakeUpstream
from tests.reliability.checks import held_blobs, snapshot_problems, store_problems
from tests.reliability.processes import Moment, kill_at, launch, relaunchable
from tests.reliability.proxy import PacingProxy
from tests.reliability.streams import Item, refetched

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

FILE_SIZE = 128 << 10
NEWER = date(2025, 8, 15)
API = "/MAAS/api/2.0"
SQUASHFS = "ubuntu/amd64/ga-24.04/noble/stable/squashfs"


@dataclass
class Site:
    """The module's region, what it publishes, and a rack synced to its older images."""

    region: DaemonProcess
    region_data: Path
    secret_file: Path
    seed_rack: Path  # data directory of a rack synced to the older import (stopped)
    items: dict[str, Item]  # stream path -> item, of the region's current (newer) stream
    squashfs_sha: str  # what a rack must serve at SQUASHFS once synced


async def region_items(data: Path) -> dict[str, Item]:
    """Every file the region's current stream lists."""
    raw = await asyncio.to_thread((data / "stream" / "current" / PRODUCTS_PATH).read_bytes)
    return {
        i.path: Item(i.path, i.sha256, i.size)
        for i in flatten(parse_products(raw))
        if i.path and i.sha256 and i.size is not None
    }


def rack_process(work: Path, name: str, data: Path, region_url: str, secret: Path) -> DaemonProcess:
    """A ``bootsync-rackd`` (not started) called ``name`` on ``data``, logging JSON."""
    config = work / f"{name}.toml"
    config.write_text(f'[server]\nhostname = "{name}"\n[log]\nformat = "json"\n')
    port = free_port()
    return DaemonProcess(
        "rack",
        [
            "--config",
            str(config),
            "--region",
            region_url,
            "--secret-file",
            str(secret),
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data),
        ],
        log_path=work / f"{name}.log",
        port=port,
    )


async def pulled(rack: DaemonProcess, *, count: int = 1) -> dict[str, object]:
    """The rack's ``count``-th pull_finished that is ok or unchanged (a complete snapshot)."""
    for _ in range(600):
        done = [e for e in rack.events("pull_finished") if e["outcome"] in ("ok", "unchanged")]
        if len(done) >= count:
            return done[count - 1]
        await asyncio.sleep(0.1)
    raise AssertionError("no complete pull:\n" + rack.log_text()[-3000:])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(
    tmp_path_factory: pytest.TempPathFactory, upstream_key: SigningKey
) -> AsyncIterator[Site]:
    """Region with the newer stream imported; a seed rack synced to the older one."""
    work = tmp_path_factory.mktemp("site")
    old = await asyncio.to_thread(
        write_sample_stream, work / "old", file_size=FILE_SIZE, versions=1, signing_key=upstream_key
    )
    new = await asyncio.to_thread(
        write_sample_stream,
        work / "new",
        file_size=FILE_SIZE,
        versions=1,
        newest=NEWER,
        signing_key=upstream_key,
    )
    with short_dir("bsk") as data:
        async with FakeUpstream() as upstream:
            upstream.serve_directory(old.root)
            region = region_daemon(work, data / "region", upstream=upstream, stream=old)
            await region.start()
            try:
                await region.wait_for_event("import_finished")
                secret = work / "rack-secret"
                secret.write_text(
                    await bootsync("rack-secret", "--data-dir", str(data / "region")) + "\n"
                )
                seed = rack_process(work, "seed", data / "seed", region.url, secret)
                await seed.start(ready_path="/livez")
                await pulled(seed)
                await seed.stop()
                await import_newer(region, data / "region", upstream, new)
                items = await region_items(data / "region")
                squashfs = next(i for p, i in items.items() if p.endswith("20250815/squashfs"))
                yield Site(region, data / "region", secret, data / "seed", items, squashfs.sha256)
            finally:
                await region.stop()


async def import_newer(
    region: DaemonProcess, data: Path, upstream: FakeUpstream, new: SampleStream
) -> None:
    """Serve ``new`` and have the region import it (op=import), until it is published."""
    upstream.serve_directory(new.root)
    key = await admin_key(data)
    async with (
        aiohttp.ClientSession(headers=oauth(key)) as s,
        s.post(f"{region.url}{API}/boot-resources/?op=import") as resp,
    ):
        assert resp.status == 200, await resp.text()
    [_, summary] = await region.wait_for_event("import_finished", count=2)
    assert summary["outcome"] == "ok", summary


async def served_sha(rack: DaemonProcess, path: str) -> str | None:
    """The sha256 of what ``rack`` serves at ``/images/{path}`` (None: no 200)."""
    async with aiohttp.ClientSession() as s, s.get(f"{rack.url}/images/{path}") as resp:
        return hashlib.sha256(await resp.read()).hexdigest() if resp.status == 200 else None


async def rack_problems(data: Path) -> list[str]:
    """Everything corrupt on the rack: its cached blobs and its current snapshot."""
    return [
        *await store_problems(data / "cache"),
        *await snapshot_problems(data / "boot-resources"),
    ]


@pytest.mark.kill_trials(ci=2)
async def test_a_rack_killed_mid_pull_restarts_intact_and_fetches_nothing_twice(
    trial_rng: random.Random, site: Site, tmp_path: Path
) -> None:
    """After kill -9 at a random moment and a restart: nothing corrupt, nothing fetched twice."""
    update = trial_rng.random() < 0.6
    data = tmp_path / "rack"
    if update:
        await asyncio.to_thread(shutil.copytree, site.seed_rack, data, symlinks=True)
    seeded = set(await asyncio.to_thread(held_blobs, data / "cache"))
    to_fetch = {p: i for p, i in site.items.items() if i.sha256 not in seeded}
    moment = Moment.draw(trial_rng, sum(i.size for i in to_fetch.values()))
    print(f"{'update of a synced rack' if update else 'new rack'}; {moment}")

    async with PacingProxy(site.region.url) as proxy:
        rack = rack_process(tmp_path, "rack", data, proxy.url, site.secret_file)
        first = relaunchable(rack, tmp_path / "killed.log")
        await launch(first)
        assert first.proc is not None
        killed = await kill_at(
            first.proc,
            moment,
            served=lambda: sum(proxy.served.get(p, 0) for p in to_fetch),
            finished=lambda: any(e["outcome"] == "ok" for e in first.events("pull_finished")),
        )
        at_kill = await rack_problems(data)
        assert not at_kill, at_kill
        held = set(await asyncio.to_thread(held_blobs, data / "cache"))
        before = dict(proxy.served)
        print(
            f"killed={killed}: {sum(before.get(p, 0) for p in to_fetch)} bytes of new files "
            f"served, {len(held & {i.sha256 for i in to_fetch.values()})}/{len(to_fetch)} held"
        )

        second = relaunchable(rack, tmp_path / "restarted.log")
        await second.start(ready_path="/livez")
        try:
            await pulled(second)
            served = await served_sha(second, SQUASHFS)
        finally:
            await second.stop()
        after = await rack_problems(data)
        assert not after, after
        assert not refetched(before, dict(proxy.served), site.items, held)
        assert served == site.squashfs_sha
