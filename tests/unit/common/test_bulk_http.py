"""The bulk path for Range parts (a blocking socket in a thread) against the real fake upstream.

Every fault is run on both paths (``BOOTSYNC_BULK_HTTP`` 1 and 0): the
outcome, its error reason and the bytes kept must be the same.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from common.storage.blobstore import BlobStore
from common.transfer import bulk
from common.transfer.download import Downloader, DownloadOutcome, make_session
from common.transfer.limits import TransferLimits
from tests.fakes.upstream import FakeUpstream
from tests.unit.common.test_ranged_download import MIB, bounded_ranges, serve


@pytest.fixture(params=["1", "0"], ids=["bulk", "aiohttp"])
def path_switch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the test with the bulk path on, then off."""
    monkeypatch.setenv(bulk.ENV_SWITCH, request.param)
    return str(request.param)


def downloader(session: aiohttp.ClientSession, store: BlobStore, **kwargs: Any) -> Downloader:
    """A downloader splitting files of 1 MiB and more into 1 MiB parts, quick to retry."""
    options: dict[str, Any] = {
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "stall_timeout": 2.0,
        "connect_timeout": 2.0,
        "chunk_size": 64 << 10,
        "split_min": MIB,
        "part_min": MIB,
    }
    options.update(kwargs)
    return Downloader(session, store, **options)


def went_bulk(upstream: FakeUpstream, path: str) -> list[bool]:
    """Per request for ``path``: True if the bulk path sent it (it asks to close the connection)."""
    return [r.headers.get("Connection") == "close" for r in upstream.requests_for(path)]


async def fetch_one(
    upstream: FakeUpstream,
    session: aiohttp.ClientSession,
    store: BlobStore,
    *,
    split: bool = True,
    **kwargs: Any,
) -> tuple[bytes, DownloadOutcome]:
    """Serve a 4 MiB /big, fetch it (split: on 4 connections, else one GET); bytes and outcome."""
    data, req = serve(upstream, "/big")
    fetcher = downloader(session, store, **kwargs)
    if split:
        [outcome] = await fetcher.fetch_all([req], concurrency=4)
    else:
        outcome = await fetcher.fetch(req)
    return data, outcome


FAULTS = [
    pytest.param(lambda u: u.truncate("/big", at_bytes=300 << 10), None, id="truncate"),
    pytest.param(lambda u: u.reset("/big", after_bytes=200 << 10), None, id="reset"),
    pytest.param(lambda u: u.stall("/big", after_bytes=100 << 10, seconds=3.0), None, id="stall"),
    pytest.param(lambda u: u.flip_byte("/big", offset=2 * MIB + 17), None, id="flip"),
    pytest.param(
        lambda u: u.flip_byte("/big", offset=5, times=2), "sha256_mismatch", id="flip_twice"
    ),
    pytest.param(lambda u: u.fail("/big", status=503, times=2), None, id="503"),
    pytest.param(lambda u: u.fail("/big", status=404, times=99), "http_404", id="404"),
    pytest.param(lambda u: u.ignore_range("/big"), None, id="ignore_range"),
    pytest.param(lambda u: u.redirect("/big", "/copy", times=None), None, id="redirect"),
]


def reason(outcome: DownloadOutcome) -> str | None:
    """The outcome's short error reason, None when it succeeded."""
    if outcome.ok:
        return None
    status = getattr(outcome.error, "status", None)
    return f"http_{status}" if status else str(getattr(outcome.error, "reason", None))


class TestPath:
    async def test_plain_http_parts_take_the_bulk_path(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        path_switch: str,
    ) -> None:
        """With the switch on every part request is the bulk path's; off, none is."""
        data, outcome = await fetch_one(fake_upstream, session, store)
        assert outcome.ok
        assert store.path_for(outcome.request.sha256).read_bytes() == data
        assert outcome.bytes_received == len(data)
        assert len(bounded_ranges(fake_upstream, "/big")) == 4
        assert set(went_bulk(fake_upstream, "/big")) == {path_switch == "1"}

    async def test_a_whole_file_get_stays_on_aiohttp(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        path_switch: str,
    ) -> None:
        """A file fetched in one GET is aiohttp's either way (the bulk path is for parts only)."""
        data, outcome = await fetch_one(fake_upstream, session, store, split=False)
        assert outcome.ok
        assert store.path_for(outcome.request.sha256).read_bytes() == data
        assert went_bulk(fake_upstream, "/big") == [False]

    def test_a_proxy_https_or_credentials_keep_aiohttp(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An environment proxy, https:// or user:password@ in the URL are not bulk."""

        async def check() -> list[bool]:
            async with make_session(user_agent="t") as s:
                plain = bulk.bulk_usable(s, "http://mirror.example/f")
                secure = bulk.bulk_usable(s, "https://mirror.example/f")
                creds = bulk.bulk_usable(s, "http://u:p@mirror.example/f")
                monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
                proxied = bulk.bulk_usable(s, "http://mirror.example/f")
                monkeypatch.setenv("no_proxy", "localhost")
                bypassed = bulk.bulk_usable(s, "http://localhost/f")
                return [plain, secure, creds, proxied, bypassed]

        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(bulk.ENV_SWITCH, "1")
        assert asyncio.run(check()) == [True, False, False, False, True]


class TestFaultsOnBothPaths:
    @pytest.mark.parametrize(
        ("fault", "expected"),
        [
            *FAULTS,
            pytest.param(
                lambda u: u.wrong_length("/big", announced=12345),
                "size_mismatch",
                id="wrong_length",
            ),
            pytest.param(lambda u: u.endless("/big"), None, id="endless"),
        ],
    )
    async def test_a_fault_ends_the_same_on_both_paths(  # noqa: PLR0917 - fixtures
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        path_switch: str,
        fault: Callable[[FakeUpstream], None],
        expected: str | None,
    ) -> None:
        """Each upstream fault gives the same outcome to a split file, bulk path on or off."""
        serve(fake_upstream, "/copy")
        fault(fake_upstream)
        data, outcome = await fetch_one(fake_upstream, session, store, stall_timeout=1.0)
        assert reason(outcome) == expected
        assert store.path_for(outcome.request.sha256).exists() == outcome.ok
        if outcome.ok:
            assert store.path_for(outcome.request.sha256).read_bytes() == data

    async def test_a_drip_below_the_minimum_rate_fails_too_slow(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        path_switch: str,
    ) -> None:
        """A part dripping under min_rate fails with too_slow on both paths, within the window."""
        serve(fake_upstream, "/big")
        fake_upstream.drip("/big", nbytes=1024, every_s=0.1)
        limits = TransferLimits(min_rate=64 << 10, rate_window_s=0.5)
        started = time.monotonic()
        _data, outcome = await fetch_one(fake_upstream, session, store, retries=0, limits=limits)
        assert reason(outcome) == "too_slow"
        assert time.monotonic() - started < 3.0


class TestCancellation:
    async def test_cancelling_stops_a_stalled_bulk_part_within_a_second(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A cancelled download with its parts stalled in bulk threads ends at once, threads too."""
        _data, req = serve(fake_upstream, "/big")
        fake_upstream.stall("/big", after_bytes=64 << 10, seconds=30.0, times=99)
        task = asyncio.create_task(
            downloader(session, store, stall_timeout=60.0).fetch_all([req], concurrency=4)
        )
        await asyncio.sleep(0.5)
        assert any(t.name == "bootsync-bulk" for t in threading.enumerate())
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0.1)
        assert not any(t.name == "bootsync-bulk" for t in threading.enumerate())
        assert store.partial_path(req.sha256).exists()  # kept for a resume
