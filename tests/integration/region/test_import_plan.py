"""The region plans an import with simplestreams.plan_downloads: real upstream, gpg and SQLite."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from common.mirror.samplestream import SampleStream
from common.trust.keyrings import SigningKey
from region.db import resources as repo_resources
from tests.fakes.upstream import FakeUpstream
from tests.integration.region.import_harness import V3, import_env, item_paths, sample_stream

HWE = "com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04"


@pytest.fixture
def contradicting(tmp_path: Path, upstream_key: SigningKey) -> tuple[SampleStream, str]:
    """A signed stream whose hwe product lists the squashfs it shares with ga one byte longer.

    Returns the stream and that squashfs's sha256.
    """
    stream = sample_stream(tmp_path / "upstream", upstream_key)
    meta = stream.root / "streams" / "v1"
    doc = json.loads((meta / f"{V3}.json").read_bytes())
    (version,) = doc["products"][HWE]["versions"].values()
    squashfs = version["items"]["squashfs"]
    squashfs["size"] += 1
    payload = json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"
    (meta / f"{V3}.json").write_bytes(payload)
    (meta / f"{V3}.sjson").write_bytes(upstream_key.clearsign(payload))
    return stream, str(squashfs["sha256"])


async def test_a_stream_listing_one_sha256_with_two_sizes_is_refused_before_any_download(
    tmp_path: Path,
    region_key: SigningKey,
    contradicting: tuple[SampleStream, str],
    fake_upstream: FakeUpstream,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """One blob announced with two sizes fails the import naming both items; nothing is fetched."""
    stream, sha256 = contradicting
    fake_upstream.serve_directory(stream.root)
    async with import_env(tmp_path / "region", region_key) as env:
        await env.add_source(fake_upstream, stream)
        summary = await env.importer.run_import("test")
        held = await repo_resources.complete_sets(env.db)
    assert summary.outcome == "failed"
    assert len(summary.errors) == 1
    assert summary.errors[0].startswith("Refused the import: ")
    assert f"sha256 {sha256} has size" in summary.errors[0]
    assert "hwe-24.04" in summary.errors[0]
    assert "ga-24.04" in summary.errors[0]
    assert item_paths(fake_upstream) == []
    assert held == []
    assert len([e for e in log_events if e["event"] == "import_plan_refused"]) == 1
