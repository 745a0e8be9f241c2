"""Fixtures the transfer tests share: a production-like HTTP session and an empty store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from common.storage.blobstore import BlobStore
from common.transfer.http import make_session


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A download session like production's."""
    async with make_session(user_agent="bootsync-tests") as s:
        yield s


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    """A blob store in tmp_path with no free-space reserve."""
    return BlobStore(tmp_path / "store", reserve=0)
