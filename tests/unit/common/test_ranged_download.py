"""One large file fetched as concurrent Range requests, against a real misbehaving upstream."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
from typing import Any

import aiohttp
import pytest

from common.storage.blobstore import BlobStore
from common.transfer.download import Downloader, DownloadRequest
from common.transfer.ranged import RANGES_XATTR, RangeLayout, load_layout
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually

MIB = 1 << 20
_BOUNDED = re.compile(r"bytes=(\d+)-(\d+)")


def splitting(session: aiohttp.ClientSession, store: BlobStore, **kwargs: Any) -> Downloader:
    """A downloader that splits files of 1 MiB and more into parts of at least 1 MiB.

    Parts that small are never split again once running (that needs 2 MiB left).
    """
    options: dict[str, Any] = {
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "stall_timeout": 5.0,
        "connect_timeout": 5.0,
        "chunk_size": 64 << 10,
        "split_min": MIB,
        "part_min": MIB,
    }
    options.update(kwargs)
    return Downloader(session, store, **options)


def serve(
    upstream: FakeUpstream, path: str, size: int = 4 * MIB, seed: int = 7
) -> tuple[bytes, DownloadRequest]:
    """Add a file to the upstream; its bytes and a request for it."""
    data = random.Random(seed).randbytes(size)
    upstream.add_file(path, data)
    sha = hashlib.sha256(data).hexdigest()
    return data, DownloadRequest(url=upstream.url(path), sha256=sha, size=size, name=path)


def bounded_ranges(upstream: FakeUpstream, path: str) -> list[tuple[int, int]]:
    """The ``bytes=a-b`` ranges asked for ``path``, in arrival order."""
    found = []
    for request in upstream.requests_for(path):
        match = _BOUNDED.fullmatch(request.range or "")
        if match is not None:
            found.append((int(match[1]), int(match[2])))
    return found


class TestSplitting:
    async def test_a_lone_large_file_is_fetched_as_one_range_per_connection(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """With 4 connections and one file, 4 ranges covering the file arrive and verify."""
        data, req = serve(fake_upstream, "/big")
        [outcome] = await splitting(session, store).fetch_all([req], concurrency=4)
        assert outcome.ok
        assert sorted(bounded_ranges(fake_upstream, "/big")) == [
            (0, MIB - 1),
            (MIB, 2 * MIB - 1),
            (2 * MIB, 3 * MIB - 1),
            (3 * MIB, 4 * MIB - 1),
        ]
        blob = store.path_for(req.sha256)
        assert blob.read_bytes() == data
        assert RANGES_XATTR not in os.listxattr(blob)
        assert not store.partial_path(req.sha256).exists()
        assert outcome.bytes_received == len(data)

    async def test_files_share_the_connections(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """Two large files on 4 connections are fetched as 2 ranges each."""
        _a, first = serve(fake_upstream, "/a", seed=1)
        _b, second = serve(fake_upstream, "/b", seed=2)
        downloader = splitting(session, store, part_min=2 * MIB)
        outcomes = await downloader.fetch_all([first, second], concurrency=4)
        assert all(o.ok for o in outcomes)
        assert len(bounded_ranges(fake_upstream, "/a")) == 2
        assert len(bounded_ranges(fake_upstream, "/b")) == 2

    async def test_small_files_and_fetch_alone_use_one_stream(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A file under split_min, or one fetched outside fetch_all, is one plain GET."""
        _s, small = serve(fake_upstream, "/small", size=MIB - 1)
        _l, large = serve(fake_upstream, "/large", seed=3)
        downloader = splitting(session, store)
        [outcome] = await downloader.fetch_all([small], concurrency=8)
        alone = await downloader.fetch(large)
        assert outcome.ok
        assert alone.ok
        assert [r.range for r in fake_upstream.requests] == [None, None]

    async def test_connections_freed_later_split_the_running_file(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A file started on one connection is split again once the other files finish."""
        smalls = [serve(fake_upstream, f"/small{i}", size=512 << 10, seed=10 + i) for i in range(3)]
        for i in range(3):
            fake_upstream.stall(f"/small{i}", after_bytes=1, seconds=0.5)
        data, big = serve(fake_upstream, "/big")
        fake_upstream.drip("/big", nbytes=64 << 10, every_s=0.05)  # ~1.3 MB/s per request
        downloader = splitting(session, store, part_min=256 << 10)
        outcomes = await downloader.fetch_all([*(r for _d, r in smalls), big], concurrency=4)
        assert all(o.ok for o in outcomes)
        ranges = bounded_ranges(fake_upstream, "/big")
        assert ranges[0] == (0, (256 << 10) - 1)  # parts of part_min, taken in file order
        assert len(ranges) >= 16
        assert len({r.range for r in fake_upstream.requests_for("/big")}) == len(ranges)
        assert store.path_for(big.sha256).read_bytes() == data

    async def test_a_server_ignoring_range_gets_one_stream(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        log_events: list[dict[str, Any]],
    ) -> None:
        """A 200 to a part's Range abandons splitting and fetches the file in one GET."""
        data, req = serve(fake_upstream, "/big")
        fake_upstream.ignore_range("/big")
        [outcome] = await splitting(session, store).fetch_all([req], concurrency=4)
        assert outcome.ok
        assert store.path_for(req.sha256).read_bytes() == data
        assert fake_upstream.requests[-1].range is None
        assert "download_range_ignored" in [e["event"] for e in log_events]


class TestFaults:
    async def test_a_truncated_part_is_resumed_alone(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A part cut short is asked for again from where it stopped; the others once."""
        data, req = serve(fake_upstream, "/big")
        fake_upstream.truncate("/big", at_bytes=300 << 10)
        [outcome] = await splitting(session, store).fetch_all([req], concurrency=4)
        assert outcome.ok
        assert outcome.attempts == 5
        ranges = bounded_ranges(fake_upstream, "/big")
        assert len(ranges) == 5
        resumed = ranges[-1]
        part_starts = {0, MIB, 2 * MIB, 3 * MIB}
        assert resumed[0] not in part_starts  # resumed inside its part, not from its start
        assert resumed[1] + 1 in {MIB, 2 * MIB, 3 * MIB, 4 * MIB}
        assert store.path_for(req.sha256).read_bytes() == data

    async def test_a_flipped_byte_refetches_every_part(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A whole-file sha256 mismatch after the parts fetches all of them again, then verifies."""
        data, req = serve(fake_upstream, "/big")
        fake_upstream.flip_byte("/big", offset=2 * MIB + 17)
        [outcome] = await splitting(session, store).fetch_all([req], concurrency=4)
        assert outcome.ok
        assert len(bounded_ranges(fake_upstream, "/big")) == 8
        assert store.path_for(req.sha256).read_bytes() == data

    async def test_a_part_corrupt_twice_fails_and_leaves_nothing(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """Corrupt bytes on both tries end in sha256_mismatch and no partial is kept."""
        _data, req = serve(fake_upstream, "/big")
        fake_upstream.flip_byte("/big", offset=5, times=2)
        [outcome] = await splitting(session, store).fetch_all([req], concurrency=4)
        assert not outcome.ok
        assert getattr(outcome.error, "reason", None) == "sha256_mismatch"
        assert not store.partial_path(req.sha256).exists()
        assert not store.path_for(req.sha256).exists()

    async def test_an_interrupted_split_download_resumes_part_by_part(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """After cancellation the parts' progress is on the partial, and only the rest is fetched."""
        data, req = serve(fake_upstream, "/big")
        fake_upstream.stall("/big", after_bytes=512 << 10, seconds=30)  # the first part to arrive
        task = asyncio.create_task(splitting(session, store).fetch_all([req], concurrency=4))
        partial = store.partial_path(req.sha256)

        def three_parts_written() -> bool:
            layout = load_layout(partial, req.size)
            return layout is not None and sum(p.complete for p in layout.parts) == 3

        await eventually(three_parts_written, timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        layout = load_layout(partial, req.size)
        assert layout is not None
        [stalled] = [p for p in layout.parts if not p.complete]
        assert 0 < stalled.done <= 512 << 10
        served_before = fake_upstream.served_bytes("/big")
        [outcome] = await splitting(session, store).fetch_all([req], concurrency=4)
        assert outcome.ok
        assert outcome.resumed_from == layout.done
        assert fake_upstream.served_bytes("/big") - served_before == req.size - layout.done
        assert bounded_ranges(fake_upstream, "/big")[-1] == (
            stalled.start + stalled.done,
            stalled.end - 1,
        )
        assert store.path_for(req.sha256).read_bytes() == data


class TestLayout:
    def test_a_plan_covers_the_file_in_equal_contiguous_parts(self) -> None:
        """plan() cuts 10 bytes into 3 parts with no gap or overlap."""
        layout = RangeLayout.plan(10, 3)
        assert [(p.start, p.end) for p in layout.parts] == [(0, 3), (3, 6), (6, 10)]

    def test_a_kept_layout_for_another_size_is_ignored(self) -> None:
        """State recorded for a different file size, with a gap, or overrun is refused."""
        kept = RangeLayout.plan(100, 2).encode()
        assert RangeLayout.decode(kept, 100) is not None
        assert RangeLayout.decode(kept, 99) is None
        assert RangeLayout.decode(b'{"size": 10, "parts": [[0, 4, 0], [5, 10, 0]]}', 10) is None
        assert RangeLayout.decode(b'{"size": 10, "parts": [[0, 10, 11]]}', 10) is None
        assert RangeLayout.decode(b"not json", 10) is None
