"""Fixtures of the region's integration tests.

``api_region`` and ``region_key`` (the API routes alone, on a fresh database) come
from the ``tests.integration.region.api_harness`` plugin; ``region`` here is the
daemon's whole app.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from common.trust.keyrings import SigningKey
from tests.fakes.upstream import FakeUpstream
from tests.integration.region.import_harness import Scene, sample_stream
from tests.integration.region.rack_harness import RackRegion, start_region


@pytest.fixture
async def region(data_dir: Path, aiohttp_client: AiohttpClient) -> RackRegion:
    """The daemon's app (region.app.build_app) after its start-up import: no images held."""
    return await start_region(data_dir, aiohttp_client)


@pytest.fixture
def scene(
    tmp_path: Path, region_key: SigningKey, upstream_key: SigningKey, fake_upstream: FakeUpstream
) -> Scene:
    """A one-version sample stream (tests may rewrite it) served by the fake upstream."""
    stream = sample_stream(tmp_path / "upstream", upstream_key)
    fake_upstream.serve_directory(stream.root)
    return Scene(
        root=tmp_path / "region",
        region_key=region_key,
        upstream_key=upstream_key,
        upstream=fake_upstream,
        stream=stream,
    )
