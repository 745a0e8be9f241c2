"""The hourly import with nothing new upstream: conditional metadata reads, under 5 KiB in all."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.mirror.samplestream import SampleStream
from common.trust.keyrings import SigningKey
from region.db import catalogue as repo_catalogue
from region.db import http_cache
from tests.fakes.upstream import FakeUpstream
from tests.integration.region.import_harness import import_env, item_paths, sample_stream

NO_CHANGE_BUDGET = 5 << 10  # bytes an import with nothing new may cost, headers included


@pytest.fixture
def stream(tmp_path: Path, upstream_key: SigningKey) -> SampleStream:
    """A one-version sample stream signed by the upstream's key."""
    return sample_stream(tmp_path / "upstream", upstream_key)


async def test_a_second_import_with_nothing_new_transfers_under_5_kib_and_changes_nothing(
    tmp_path: Path, region_key: SigningKey, stream: SampleStream, fake_upstream: FakeUpstream
) -> None:
    """Each metadata GET carries the ETag kept in the database, is answered 304, and nothing changes."""
    fake_upstream.serve_directory(stream.root)
    async with import_env(tmp_path / "region", region_key) as env:
        source = await env.add_source(fake_upstream, stream)
        first = await env.importer.run_import("first")
        assert first.outcome == "ok", first.errors
        snapshot = await env.publisher.current_id()
        catalogue = await repo_catalogue.available(env.db, source.id)
        requests_before = len(fake_upstream.requests)
        sent_before = fake_upstream.transferred_bytes()
        second = await env.importer.run_import("hourly")
        transferred = fake_upstream.transferred_bytes() - sent_before
        requests = fake_upstream.requests[requests_before:]
        assert await env.publisher.current_id() == snapshot
        assert await repo_catalogue.available(env.db, source.id) == catalogue
    assert transferred <= NO_CHANGE_BUDGET, f"{transferred} bytes for an import with nothing new"
    assert requests, "the upstream was asked"
    assert all(r.path.startswith("/streams/") for r in requests)
    assert all("If-None-Match" in r.headers for r in requests)
    assert second.outcome == "ok"
    assert (second.files_fetched, second.images_added, second.published) == (0, 0, False)
    assert len(item_paths(fake_upstream)) == first.files_fetched


async def test_the_kept_documents_survive_a_restart_and_are_the_signed_bytes(
    tmp_path: Path, region_key: SigningKey, stream: SampleStream, fake_upstream: FakeUpstream
) -> None:
    """The database keeps each document as served (clearsigned); a restarted region asks with it."""
    fake_upstream.serve_directory(stream.root)
    index_url = fake_upstream.url("/streams/v1/index.sjson")
    async with import_env(tmp_path / "region", region_key) as env:
        await env.add_source(fake_upstream, stream)
        await env.importer.run_import("first")
        kept = await http_cache.get_document(env.db, index_url)
    assert kept is not None
    assert kept.body == (stream.root / "streams/v1/index.sjson").read_bytes()
    assert kept.body.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----")
    sent = fake_upstream.served_bytes()
    async with import_env(tmp_path / "region", region_key) as env:
        summary = await env.importer.run_import("after restart")
    assert summary.outcome == "ok"
    assert fake_upstream.served_bytes() == sent
