"""After an import the default and commissioning releases are set as MAAS sets them."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from common.mirror.samplestream import SampleStream
from common.trust.keyrings import SigningKey
from region.db import config as repo_config
from tests.fakes.upstream import FakeUpstream
from tests.integration.region.import_harness import import_env, sample_stream

Events = list[MutableMapping[str, Any]]


@pytest.fixture
def stream(tmp_path: Path, upstream_key: SigningKey, fake_upstream: FakeUpstream) -> SampleStream:
    """A sample stream (jammy and noble) served by the fake upstream."""
    written = sample_stream(tmp_path / "upstream", upstream_key)
    fake_upstream.serve_directory(written.root)
    return written


RELEASE_KEYS = (
    "commissioning_osystem",
    "commissioning_distro_series",
    "default_osystem",
    "default_distro_series",
)


async def test_the_first_import_sets_unset_releases_to_the_newest_lts_imported(
    tmp_path: Path,
    region_key: SigningKey,
    stream: SampleStream,
    fake_upstream: FakeUpstream,
    log_events: Events,
) -> None:
    """jammy alone imported: both release pairs become ubuntu/jammy, stored, logged once."""
    async with import_env(tmp_path / "region", region_key) as env:
        await env.add_source(fake_upstream, stream, releases=("jammy",))
        before = {k: await repo_config.is_config_set(env.db, k) for k in RELEASE_KEYS}
        summary = await env.importer.run_import("test")
        values = {k: await repo_config.get_config(env.db, k) for k in RELEASE_KEYS}
        stored = {k: await repo_config.is_config_set(env.db, k) for k in RELEASE_KEYS}
    assert summary.outcome == "ok", summary.errors
    assert before == dict.fromkeys(RELEASE_KEYS, False)
    assert values == {
        "commissioning_osystem": "ubuntu",
        "commissioning_distro_series": "jammy",
        "default_osystem": "ubuntu",
        "default_distro_series": "jammy",
    }
    assert stored == dict.fromkeys(RELEASE_KEYS, True)
    assert [e["event"] for e in log_events].count("default_releases_set") == 1


async def test_releases_an_operator_chose_are_kept(
    tmp_path: Path, region_key: SigningKey, stream: SampleStream, fake_upstream: FakeUpstream
) -> None:
    """A default release set before the import stays; the unset commissioning one is filled."""
    async with import_env(tmp_path / "region", region_key) as env:
        await env.add_source(fake_upstream, stream, releases=("jammy", "noble"))
        await repo_config.set_config(env.db, "default_distro_series", "jammy")
        summary = await env.importer.run_import("test")
        values = {k: await repo_config.get_config(env.db, k) for k in RELEASE_KEYS}
        filled = await repo_config.is_config_set(env.db, "commissioning_distro_series")
    assert summary.outcome == "ok", summary.errors
    assert filled
    assert values["default_distro_series"] == "jammy"
    assert values["commissioning_distro_series"] == "noble"  # the newest LTS, longest support
