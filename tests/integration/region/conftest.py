"""Fixtures of the region's integration tests.

``api_region`` and ``region_key`` (the API routes alone, on a fresh database) come
from the ``tests.integration.region.api_harness`` plugin; ``region`` here is the
daemon's whole app.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from tests.integration.region.rack_harness import RackRegion, start_region


@pytest.fixture
async def region(data_dir: Path, aiohttp_client: AiohttpClient) -> RackRegion:
    """The daemon's app (region.app.build_app) after its start-up import: no images held."""
    return await start_region(data_dir, aiohttp_client)
