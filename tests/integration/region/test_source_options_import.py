"""The import honours the boot-source fields: priority, enabled, skip_keyring_verification."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from common.mirror.samplestream import SampleStream
from common.trust.keyrings import SigningKey
from region.db import catalogue as repo_catalogue
from region.db import resources as repo_resources
from region.db import sources as repo_sources
from region.db.sources import BootSource
from tests.fakes.upstream import FakeUpstream
from tests.integration.region.import_harness import ImportEnv, import_env, sample_stream

NOBLE_GA = ("ubuntu/noble", "amd64/ga-24.04")
OLDER, NEWER = date(2025, 7, 18), date(2025, 8, 15)


@dataclass
class Two:
    """Two upstreams, each serving its own sample stream (different versions)."""

    older: FakeUpstream
    newer: FakeUpstream
    older_stream: SampleStream
    newer_stream: SampleStream


@pytest.fixture
def streams(tmp_path: Path, upstream_key: SigningKey) -> tuple[SampleStream, SampleStream]:
    """A stream whose newest version is 20250718 and one whose newest is 20250815."""
    return (
        sample_stream(tmp_path / "older", upstream_key, newest=OLDER),
        sample_stream(tmp_path / "newer", upstream_key, newest=NEWER),
    )


@pytest.fixture
async def two(
    fake_upstream: FakeUpstream, streams: tuple[SampleStream, SampleStream]
) -> AsyncIterator[Two]:
    """The older stream on the shared fake upstream, the newer one on a second."""
    fake_upstream.serve_directory(streams[0].root)
    async with FakeUpstream() as other:
        other.serve_directory(streams[1].root)
        yield Two(fake_upstream, other, *streams)


async def add(
    env: ImportEnv,
    upstream: FakeUpstream,
    stream: SampleStream,
    *,
    priority: int | None = None,
    enabled: bool = True,
    skip_keyring_verification: bool | None = None,
) -> BootSource:
    """A source for ``stream`` on ``upstream`` selecting noble/amd64, with those options."""
    source = await repo_sources.create_source(
        env.db,
        url=upstream.url("/"),
        keyring_data=stream.keyring.read_bytes(),
        priority=priority,
        enabled=enabled,
        skip_keyring_verification=skip_keyring_verification,
    )
    await repo_sources.create_selection(
        env.db,
        source.id,
        os="ubuntu",
        release="noble",
        arches=["amd64"],
        subarches=["*"],
        labels=["*"],
    )
    return source


async def noble_version(env: ImportEnv) -> list[str]:
    """The versions of noble/amd64 ga the region holds complete."""
    for resource, sets in await repo_resources.complete_sets(env.db):
        if resource.key == NOBLE_GA:
            return [s.version for s in sets]
    return []


@pytest.mark.parametrize(("older_priority", "newer_priority"), [(20, 10), (10, 20)])
async def test_the_higher_priority_source_wins_an_image_both_offer(
    tmp_path: Path, region_key: SigningKey, two: Two, older_priority: int, newer_priority: int
) -> None:
    """Whichever source has the higher priority gives noble, whatever their order of creation."""
    async with import_env(tmp_path / "region", region_key) as env:
        await add(env, two.older, two.older_stream, priority=older_priority)
        await add(env, two.newer, two.newer_stream, priority=newer_priority)
        summary = await env.importer.run_import("test")
        held = await noble_version(env)
    assert summary.outcome == "ok", summary.errors
    expected = "20250718" if older_priority > newer_priority else "20250815"
    assert held == [expected]


async def test_a_disabled_source_is_not_read(
    tmp_path: Path, region_key: SigningKey, two: Two
) -> None:
    """A disabled source's upstream gets no request; the enabled one's images are imported."""
    async with import_env(tmp_path / "region", region_key) as env:
        await add(env, two.older, two.older_stream, priority=1)
        disabled = await add(env, two.newer, two.newer_stream, priority=2, enabled=False)
        summary = await env.importer.run_import("test")
        held = await noble_version(env)
        status = await repo_catalogue.get_status(env.db, disabled.id)
    assert summary.outcome == "ok", summary.errors
    assert held == ["20250718"]
    assert two.newer.requests_for("streams/v1/index.sjson") == []
    assert two.newer.requests_for("streams/v1/index.json") == []
    assert disabled.url not in summary.sources
    assert status.last_error is None


async def test_an_unsigned_index_is_read_only_with_skip_keyring_verification(
    tmp_path: Path,
    region_key: SigningKey,
    fake_upstream: FakeUpstream,
    streams: tuple[SampleStream, SampleStream],
) -> None:
    """index.json without skip: the source fails, named; with skip: it imports, unverified."""
    stream = streams[0]
    fake_upstream.serve_directory(stream.root)
    unsigned = fake_upstream.url("/streams/v1/index.json")
    async with import_env(tmp_path / "region", region_key) as env:
        source = await add(env, fake_upstream, stream, skip_keyring_verification=False)
        await repo_sources.update_source(env.db, source.id, url=unsigned)
        refused = await env.importer.run_import("refused")
        held_refused = await noble_version(env)
        await repo_sources.update_source(env.db, source.id, skip_keyring_verification=True)
        accepted = await env.importer.run_import("accepted")
        held = await noble_version(env)
    assert refused.outcome == "failed"
    assert any("skip_keyring_verification" in e for e in refused.errors)
    assert held_refused == []
    assert accepted.outcome == "ok", accepted.errors
    assert held == ["20250718"]


async def test_skip_on_a_mirror_root_reads_its_unsigned_index(
    tmp_path: Path,
    region_key: SigningKey,
    fake_upstream: FakeUpstream,
    streams: tuple[SampleStream, SampleStream],
) -> None:
    """A root URL with skip reads streams/v1/index.json, never the signed one."""
    fake_upstream.serve_directory(streams[0].root)
    async with import_env(tmp_path / "region", region_key) as env:
        await add(env, fake_upstream, streams[0], skip_keyring_verification=True)
        summary = await env.importer.run_import("test")
        held = await noble_version(env)
    assert summary.outcome == "ok", summary.errors
    assert held == ["20250718"]
    assert fake_upstream.requests_for("streams/v1/index.sjson") == []
    assert fake_upstream.requests_for("streams/v1/index.json")
