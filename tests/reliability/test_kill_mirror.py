"""kill -9 of a real ``bootsync mirror`` at a random moment of a run, then the run again.

Each trial mirrors into an empty directory or into one holding an older
mirror (the trial's RNG chooses), from a fake upstream sending each file
slowly, kills the process at its moment, checks the directory, and runs the
same command to its end. Promised: nothing in the mirror is corrupt at the
kill or after (every blob hashes to its name; the metadata on disk verifies
against the mirror's keyring and every file it lists is there with its
sha256), the second run exits 0 listing the newer files, and no file the
store held at the kill is fetched again (others at most once more, resumed).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.mirror.sync import MirrorOptions, run_mirror
from common.mirror.tree import KEYRING_NAME, STATE_DIR
from common.trust.keyrings import SigningKey, aload_keyring
from simplestreams import FlatItem, ItemFilter, flatten, parse_products
from tests.fakes.streams import short_dir
from tests.fakes.upstream import FakeUpstream
from tests.reliability.checks import held_blobs, signed_stream_problems, store_problems
from tests.reliability.processes import Moment, kill_at, run_to_end, spawn
from tests.reliability.streams import item_bytes, pace, refetched, served_items, stream_items

pytestmark = pytest.mark.slow

FILE_SIZE = 128 << 10
NEWER = date(2025, 8, 15)
V3 = "streams/v1/com.ubuntu.maas:stable:v3:download.json"
INDEX = "streams/v1/index.sjson"
FILTERS = ("arch=amd64",)


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


@pytest.fixture(scope="module")
def mirror_key() -> Iterator[Path]:
    """The GnuPG home of the key that signs the mirrors (``--signing-key``)."""
    with short_dir("bsm") as home:
        SigningKey.create(home / "g", name="mirror", email="m@test.invalid").close()
        yield home / "g"


def amd64_items(stream: SampleStream) -> dict[str, FlatItem]:
    """The items of ``stream`` the trials' filter (arch=amd64) selects."""
    found = {}
    for doc in (stream.root / "streams" / "v1").glob("*.json"):
        if doc.name == "index.json":
            continue
        for item in flatten(parse_products(doc.read_bytes())):
            if item.path and item.fields.get("arch") == "amd64":
                found[item.path] = item
    return found


async def mirror_problems(target: Path) -> list[str]:
    """Everything corrupt in the mirror: its blobs, and its metadata against its files."""
    return [
        *await store_problems(target / STATE_DIR / "store"),
        *await signed_stream_problems(target, target / KEYRING_NAME, INDEX),
    ]


async def mirror_older(upstream: FakeUpstream, old: SampleStream, target: Path, home: Path) -> None:
    """Mirror ``old`` into ``target`` in this process (the same code), to update it later."""
    upstream.serve_directory(old.root)
    key = await asyncio.to_thread(SigningKey.open, home)
    try:
        summary = await run_mirror(
            MirrorOptions(
                source_url=upstream.url("/"),
                target=target,
                keyring=await aload_keyring(old.keyring),
                signing_key=key,
                filters=tuple(ItemFilter.parse(f) for f in FILTERS),
                show_progress=False,
            )
        )
    finally:
        await asyncio.to_thread(key.close)
    assert summary.outcome == "ok"


@pytest.mark.kill_trials(ci=3)
async def test_a_mirror_killed_mid_run_is_intact_and_the_next_run_fetches_nothing_twice(
    trial_rng: random.Random,
    streams: tuple[SampleStream, SampleStream],
    mirror_key: Path,
    fake_upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    """After kill -9 at a random moment and a rerun: nothing corrupt, nothing fetched twice."""
    old, new = streams
    wanted = amd64_items(new)
    items = {p: i for p, i in stream_items(new.root).items() if p in wanted}
    update = trial_rng.random() < 0.6
    moment = Moment.draw(trial_rng, sum(i.size for i in items.values()))
    print(f"{'update of an older mirror' if update else 'empty'}; {moment}")
    target = tmp_path / "mirror"
    if update:
        await mirror_older(fake_upstream, old, target, mirror_key)
    fake_upstream.serve_directory(new.root)
    pace(fake_upstream, items, piece=16 << 10, every_s=0.03)
    argv = [
        "common.cli",
        "--log-format",
        "json",
        "mirror",
        fake_upstream.url("/"),
        str(target),
        "--keyring",
        str(new.keyring),
        "--signing-key",
        str(mirror_key),
        "--no-progress",
        *FILTERS,
    ]

    killed_log = tmp_path / "killed.log"
    start = served_items(fake_upstream)
    proc = await spawn(argv, log_path=killed_log)
    killed = await kill_at(
        proc,
        moment,
        served=lambda: item_bytes(fake_upstream, start),
        finished=lambda: '"mirror_finished"' in killed_log.read_text(errors="replace"),
    )
    at_kill = await mirror_problems(target)
    assert not at_kill, at_kill
    held = set(await asyncio.to_thread(held_blobs, target / STATE_DIR / "store"))
    print(
        f"killed={killed}: {item_bytes(fake_upstream, start)} item bytes served, "
        f"{len(held & {i.sha256 for i in items.values()})}/{len(items)} new files held"
    )
    before = served_items(fake_upstream)

    code, output = await run_to_end(argv, log_path=tmp_path / "rerun.log")
    assert code == 0, output[-3000:]
    after = await mirror_problems(target)
    assert not after, after
    assert not refetched(before, served_items(fake_upstream), items, held)
    listed = parse_products(await asyncio.to_thread((target / V3).read_bytes))
    assert {i.path for i in flatten(listed) if i.path} >= {
        p for p in items if p.startswith(("noble/", "jammy/"))
    }
