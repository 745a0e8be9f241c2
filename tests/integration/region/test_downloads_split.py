"""The region import's downloads split a lone large file into Range parts, like the mirror and rack."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.storage.blobstore import BlobStore
from common.transfer.download import SPLIT_MIN, DownloadRequest, make_session
from region.db.connection import Database, open_db
from region.images.downloads import fetch_blobs
from region.images.proxy import UpstreamSessions
from tests.fakes.upstream import FakeUpstream

_BOUNDED = re.compile(r"bytes=(\d+)-(\d+)")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated region database."""
    async with open_db(tmp_path / "region.db") as database:
        yield database


async def test_a_lone_large_file_is_fetched_as_range_parts(
    fake_upstream: FakeUpstream, db: Database, tmp_path: Path
) -> None:
    """A file of SPLIT_MIN bytes alone in an import arrives as several Range parts and verifies."""
    data = random.Random(3).randbytes(SPLIT_MIN)
    fake_upstream.add_file("/squashfs", data)
    req = DownloadRequest(
        url=fake_upstream.url("/squashfs"),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        name="squashfs",
    )
    store = BlobStore(tmp_path / "store", reserve=0)
    async with (
        make_session(user_agent="bootsync-tests") as session,
        UpstreamSessions(db, session) as sessions,
    ):
        [outcome] = await fetch_blobs(db, store, sessions, [req], {}, concurrency=4, interval=0.05)
    assert outcome.ok
    assert store.path_for(req.sha256).read_bytes() == data
    ranges = [_BOUNDED.fullmatch(r.range or "") for r in fake_upstream.requests_for("/squashfs")]
    assert len(ranges) >= 2
    assert all(ranges)
