"""The downloader against a real, misbehaving HTTP upstream and a real blob store."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from common.errors import (
    DigestMismatchError,
    HTTPStatusError,
    InsufficientSpaceError,
    OversizeError,
    StallError,
    TruncatedBodyError,
)
from common.storage.blobstore import BlobStore
from common.transfer.download import Downloader, DownloadRequest
from common.transfer.http import parse_content_range, parse_retry_after, translate_error
from tests.fakes.upstream import FakeUpstream

MIB = 1 << 20


def make_blob(size: int, seed: int) -> tuple[bytes, str]:
    """Reproducible bytes and their sha256."""
    data = random.Random(seed).randbytes(size)
    return data, hashlib.sha256(data).hexdigest()


def downloader(session: aiohttp.ClientSession, store: BlobStore, **kwargs: Any) -> Downloader:
    """A downloader with test-sized backoff and timeouts."""
    options: dict[str, Any] = {
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "stall_timeout": 5.0,
        "connect_timeout": 5.0,
        "chunk_size": 256 << 10,
    }
    options.update(kwargs)
    return Downloader(session, store, **options)


def range_start(header: str | None) -> int:
    """The first byte asked for by a ``bytes=N-`` Range header."""
    assert header is not None
    assert header.startswith("bytes=")
    assert header.endswith("-")
    return int(header.removeprefix("bytes=").removesuffix("-"))


def serve(
    upstream: FakeUpstream, path: str, size: int = 3 * MIB, seed: int = 1
) -> tuple[bytes, DownloadRequest]:
    """Add a file to the upstream and return its bytes and a request for it."""
    data, sha = make_blob(size, seed)
    upstream.add_file(path, data)
    return data, DownloadRequest(url=upstream.url(path), sha256=sha, size=size, name=path)


class TestSuccessfulDownloads:
    async def test_a_download_is_stored_at_its_content_address(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        log_events: list[dict[str, Any]],
    ) -> None:
        """A clean download ends at sha256/<aa>/<sha>, with no partial left behind."""
        data, req = serve(fake_upstream, "/img/a.squashfs")
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert outcome.error is None
        assert (outcome.attempts, outcome.bytes_received, outcome.resumed_from) == (1, len(data), 0)
        assert store.path_for(req.sha256).read_bytes() == data
        assert store.path_for(req.sha256).parent.name == req.sha256[:2]
        assert not store.partial_path(req.sha256).exists()
        events = [e["event"] for e in log_events if e["event"].startswith("download_")]
        assert events == ["download_started", "download_finished"]

    async def test_a_stored_blob_is_reused_without_a_request(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A blob already in the store is reported as reused and not fetched again."""
        data, req = serve(fake_upstream, "/a")
        await store.ingest_bytes(data)
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert outcome.reused
        assert outcome.attempts == 0
        assert fake_upstream.requests == []

    async def test_an_empty_file_is_stored_without_a_request(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A zero-byte file needs no bytes from the server, so none are asked for."""
        _data, req = serve(fake_upstream, "/empty", size=0)
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert store.path_for(req.sha256).read_bytes() == b""
        assert fake_upstream.requests == []

    async def test_a_redirect_is_followed(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A 302 to another path is followed and the target's bytes are stored."""
        data, req = serve(fake_upstream, "/new/a")
        fake_upstream.redirect("/old/a", "/new/a")
        moved = DownloadRequest(url=fake_upstream.url("/old/a"), sha256=req.sha256, size=req.size)
        outcome = await downloader(session, store).fetch(moved)
        assert outcome.ok
        assert [r.path for r in fake_upstream.requests] == ["/old/a", "/new/a"]
        assert store.path_for(req.sha256).read_bytes() == data

    async def test_progress_reports_every_byte_received(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """on_progress gets deltas that add up to the bytes received."""
        _data, req = serve(fake_upstream, "/a")
        seen: list[int] = []
        outcome = await downloader(session, store, on_progress=lambda r, n: seen.append(n)).fetch(
            req
        )
        assert outcome.ok
        assert sum(seen) == req.size

    async def test_the_same_blob_requested_twice_at_once_is_fetched_once(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """Two concurrent requests for one sha256 share a single download."""
        _data, req = serve(fake_upstream, "/a")
        first, second = await downloader(session, store).fetch_all([req, req], concurrency=2)
        assert first.ok
        assert second.ok
        assert second.reused
        assert len(fake_upstream.requests) == 1


class TestResume:
    async def test_a_truncated_body_is_resumed_with_a_range_request(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """After a body cut at 1 MiB the retry asks for the rest with Range."""
        data, req = serve(fake_upstream, "/a")
        fake_upstream.truncate("/a", at_bytes=MIB)
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert outcome.attempts == 2
        # aiohttp drops what it had buffered but not yet handed over when the body breaks.
        assert fake_upstream.requests[0].range is None
        assert 0 < range_start(fake_upstream.requests[1].range) <= MIB
        assert outcome.bytes_received == len(data)
        assert store.path_for(req.sha256).read_bytes() == data

    async def test_a_connection_reset_mid_body_is_resumed(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A TCP reset after some bytes is retried from where the bytes stopped."""
        data, req = serve(fake_upstream, "/a")
        fake_upstream.reset("/a", after_bytes=MIB + 5)
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert outcome.attempts == 2
        assert 0 < range_start(fake_upstream.requests[1].range) <= MIB + 5
        assert store.path_for(req.sha256).read_bytes() == data

    async def test_a_partial_left_by_an_earlier_process_is_resumed(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A partial already on disk is hashed and only the rest is requested."""
        data, req = serve(fake_upstream, "/a")
        partial = store.partial_path(req.sha256)
        partial.parent.mkdir(parents=True)
        partial.write_bytes(data[: MIB + 7])
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert outcome.resumed_from == MIB + 7
        assert [r.range for r in fake_upstream.requests] == [f"bytes={MIB + 7}-"]
        assert outcome.bytes_received == len(data) - (MIB + 7)
        assert store.path_for(req.sha256).read_bytes() == data

    async def test_a_server_that_ignores_range_is_read_from_zero(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A 200 answer to a Range request replaces the partial with the full body."""
        data, req = serve(fake_upstream, "/a")
        fake_upstream.ignore_range("/a")
        partial = store.partial_path(req.sha256)
        partial.parent.mkdir(parents=True)
        partial.write_bytes(data[:MIB])
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert outcome.attempts == 1
        assert outcome.bytes_received == len(data)
        assert store.path_for(req.sha256).read_bytes() == data

    async def test_a_partial_with_wrong_bytes_is_discarded_and_fetched_again(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A stale partial whose bytes do not match fails the digest once, then starts over."""
        data, req = serve(fake_upstream, "/a")
        partial = store.partial_path(req.sha256)
        partial.parent.mkdir(parents=True)
        partial.write_bytes(b"\0" * MIB)
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert outcome.attempts == 2
        assert [r.range for r in fake_upstream.requests] == [f"bytes={MIB}-", None]
        assert store.path_for(req.sha256).read_bytes() == data


class TestRetries:
    async def test_a_flipped_byte_is_discarded_and_fetched_again_from_zero(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """One corrupted body fails the digest; the retry starts from zero and succeeds."""
        data, req = serve(fake_upstream, "/a")
        fake_upstream.flip_byte("/a", offset=12345)
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert outcome.attempts == 2
        assert [r.range for r in fake_upstream.requests] == [None, None]
        assert store.path_for(req.sha256).read_bytes() == data

    async def test_a_persistently_flipped_byte_fails_with_digest_mismatch(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        log_events: list[dict[str, Any]],
    ) -> None:
        """Two corrupted bodies fail the file, leaving neither a blob nor a partial."""
        _data, req = serve(fake_upstream, "/a")
        fake_upstream.flip_byte("/a", offset=7, times=10)
        outcome = await downloader(session, store).fetch(req)
        assert not outcome.ok
        assert isinstance(outcome.error, DigestMismatchError)
        assert outcome.attempts == 2
        assert not store.path_for(req.sha256).exists()
        assert not store.partial_path(req.sha256).exists()
        failed = [e for e in log_events if e["event"] == "download_failed"]
        assert failed[0]["reason"] == "sha256_mismatch"

    async def test_two_503s_then_ok_succeed_on_the_third_attempt(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        log_events: list[dict[str, Any]],
    ) -> None:
        """A 503 is retried with backoff until the server recovers."""
        _data, req = serve(fake_upstream, "/a")
        fake_upstream.fail("/a", status=503, times=2)
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert outcome.attempts == 3
        retries = [e for e in log_events if e["event"] == "download_retrying"]
        assert [e["attempt"] for e in retries] == [1, 2]
        assert all(0 <= e["delay_s"] <= 0.05 for e in retries)

    async def test_a_404_fails_at_once(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A 404 is not retried: one attempt, HTTPStatusError 404."""
        _data, req = serve(fake_upstream, "/a")
        missing = DownloadRequest(url=fake_upstream.url("/nope"), sha256=req.sha256, size=req.size)
        outcome = await downloader(session, store).fetch(missing)
        assert not outcome.ok
        assert outcome.attempts == 1
        assert isinstance(outcome.error, HTTPStatusError)
        assert outcome.error.status == 404
        assert len(fake_upstream.requests) == 1

    async def test_retry_after_is_honoured_up_to_backoff_max(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        log_events: list[dict[str, Any]],
    ) -> None:
        """A 429's Retry-After sets the delay, but never beyond backoff_max."""
        _data, req = serve(fake_upstream, "/a")
        _data_b, req_b = serve(fake_upstream, "/b", seed=2)
        fake_upstream.fail("/a", status=429, times=1, retry_after=0.2)
        fake_upstream.fail("/b", status=429, times=1, retry_after=3600)
        fetcher = downloader(session, store, backoff_max=0.3)
        assert (await fetcher.fetch(req)).ok
        assert (await fetcher.fetch(req_b)).ok
        delays = [e["delay_s"] for e in log_events if e["event"] == "download_retrying"]
        assert delays[0] >= 0.2
        assert delays[1] <= 0.3

    async def test_retries_stop_after_the_configured_number(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A server that keeps failing is tried retries + 1 times, then the file fails."""
        _data, req = serve(fake_upstream, "/a")
        fake_upstream.fail("/a", status=500, times=100)
        outcome = await downloader(session, store, retries=2).fetch(req)
        assert not outcome.ok
        assert outcome.attempts == 3
        assert len(fake_upstream.requests) == 3

    async def test_a_stall_raises_stall_error_and_the_retry_succeeds(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        log_events: list[dict[str, Any]],
    ) -> None:
        """No bytes for stall_timeout is a StallError; the retry resumes and finishes."""
        data, req = serve(fake_upstream, "/a")
        fake_upstream.stall("/a", after_bytes=MIB, seconds=30)
        outcome = await downloader(session, store, stall_timeout=0.3).fetch(req)
        assert outcome.ok
        assert outcome.attempts == 2
        retry = next(e for e in log_events if e["event"] == "download_retrying")
        assert "stall" in retry["error"]
        assert 0 < range_start(fake_upstream.requests[1].range) <= MIB
        assert store.path_for(req.sha256).read_bytes() == data

    async def test_a_stall_that_never_ends_fails_with_stall_error(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """When every attempt stalls, the file fails with StallError and keeps its partial."""
        _data, req = serve(fake_upstream, "/a")
        fake_upstream.stall("/a", after_bytes=0, seconds=30, times=10)
        outcome = await downloader(session, store, stall_timeout=0.2, retries=1).fetch(req)
        assert not outcome.ok
        assert isinstance(outcome.error, StallError)
        assert outcome.attempts == 2


class TestRefusals:
    async def test_a_content_length_larger_than_expected_is_refused_before_reading(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """An announced length beyond the expected size fails with OversizeError, unread."""
        _data, req = serve(fake_upstream, "/a")
        fake_upstream.wrong_length("/a", announced=req.size + 1)
        outcome = await downloader(session, store).fetch(req)
        assert not outcome.ok
        assert isinstance(outcome.error, OversizeError)
        assert outcome.attempts == 1
        assert outcome.bytes_received == 0
        assert not store.path_for(req.sha256).exists()
        assert not store.partial_path(req.sha256).exists()

    async def test_a_body_running_past_the_expected_size_is_cut_and_discarded(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """A chunked body longer than the metadata says stops the read with OversizeError."""
        data, _req = serve(fake_upstream, "/a")
        fake_upstream.wrong_length("/a", announced=None)
        short = DownloadRequest(
            url=fake_upstream.url("/a"), sha256=hashlib.sha256(data[:MIB]).hexdigest(), size=MIB
        )
        outcome = await downloader(session, store).fetch(short)
        assert not outcome.ok
        assert isinstance(outcome.error, OversizeError)
        assert outcome.bytes_received <= MIB
        assert not store.path_for(short.sha256).exists()
        assert not store.partial_path(short.sha256).exists()

    async def test_insufficient_space_fails_before_any_request(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        """A store without room for the file fails it with InsufficientSpaceError, unrequested."""
        _data, req = serve(fake_upstream, "/a")
        outcome = await downloader(session, TinyStore(tmp_path / "store")).fetch(req)
        assert not outcome.ok
        assert isinstance(outcome.error, InsufficientSpaceError)
        assert fake_upstream.requests == []


class TinyStore(BlobStore):
    """A store that believes its filesystem has 1 MiB free."""

    def _disk_usage(self) -> tuple[int, int]:
        return MIB, 1 << 40


class TestFetchAll:
    async def test_one_bad_file_does_not_stop_the_others(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """fetch_all returns one outcome per request, in order, whatever each one did."""
        reqs = [serve(fake_upstream, f"/f{i}", size=MIB, seed=i)[1] for i in range(4)]
        fake_upstream.fail("/f1", status=404, times=1)
        outcomes = await downloader(session, store).fetch_all(reqs, concurrency=2)
        assert [o.request for o in outcomes] == reqs
        assert [o.ok for o in outcomes] == [True, False, True, True]
        assert isinstance(outcomes[1].error, HTTPStatusError)

    async def test_cancelling_fetch_all_returns_promptly_and_leaves_partials(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession, store: BlobStore
    ) -> None:
        """Cancelled mid-body, every download stops and its partial is resumed later."""
        reqs = [serve(fake_upstream, f"/f{i}", size=2 * MIB, seed=i)[1] for i in range(3)]
        for i in range(3):
            fake_upstream.stall(f"/f{i}", after_bytes=MIB, seconds=60)
        received = dict.fromkeys([r.sha256 for r in reqs], 0)
        midway = asyncio.Event()

        def on_progress(req: DownloadRequest, nbytes: int) -> None:
            received[req.sha256] += nbytes
            if all(n >= 3 * MIB // 4 for n in received.values()):
                midway.set()

        fetcher = downloader(
            session, store, chunk_size=64 << 10, stall_timeout=60, on_progress=on_progress
        )
        task = asyncio.create_task(fetcher.fetch_all(reqs, concurrency=3))
        async with asyncio.timeout(10):
            await midway.wait()
        task.cancel()
        async with asyncio.timeout(2):
            with pytest.raises(asyncio.CancelledError):
                await task
        partials = [store.partial_path(r.sha256) for r in reqs]
        assert all(p.stat().st_size > 0 for p in partials)
        assert not any(store.path_for(r.sha256).exists() for r in reqs)
        resumed_from = partials[0].stat().st_size
        outcome = await downloader(session, store).fetch(reqs[0])
        assert outcome.ok
        assert outcome.resumed_from == resumed_from
        assert fake_upstream.requests_for("/f0")[-1].range == f"bytes={resumed_from}-"


class TestProxy:
    async def test_http_proxy_from_the_environment_is_used(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        recording_proxy: RecordingProxy,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """With http_proxy set, the request goes to the proxy in absolute form."""
        data, req = serve(fake_upstream, "/a")
        monkeypatch.setenv("http_proxy", recording_proxy.url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert recording_proxy.targets == [req.url]
        assert store.path_for(req.sha256).read_bytes() == data

    async def test_no_proxy_bypasses_the_proxy(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        store: BlobStore,
        recording_proxy: RecordingProxy,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """no_proxy=127.0.0.1 sends the request straight to the server."""
        _data, req = serve(fake_upstream, "/a")
        monkeypatch.setenv("http_proxy", recording_proxy.url)
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        outcome = await downloader(session, store).fetch(req)
        assert outcome.ok
        assert recording_proxy.targets == []
        assert len(fake_upstream.requests) == 1


class RecordingProxy:
    """A forward HTTP proxy on 127.0.0.1 that records each absolute-form target."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        target = URL(request.raw_path)  # the request-target exactly as the client sent it
        self.targets.append(str(target))
        if not target.is_absolute():
            return web.Response(status=400, text="not a proxy request")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("range",)}
        async with (
            aiohttp.ClientSession() as upstream,
            upstream.get(target, headers=headers) as resp,
        ):
            body = await resp.read()
            passed = {k: v for k, v in resp.headers.items() if k.lower() == "content-range"}
            return web.Response(status=resp.status, body=body, headers=passed)


@pytest.fixture
async def recording_proxy() -> AsyncIterator[RecordingProxy]:
    """A started RecordingProxy."""
    proxy = RecordingProxy()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    proxy.url = f"http://127.0.0.1:{server.port}"
    yield proxy
    await server.close()


class TestHeaderParsing:
    def test_content_range_is_parsed_and_nonsense_rejected(self) -> None:
        """Valid byte ranges parse to (first, last, total); malformed ones give None."""
        assert parse_content_range("bytes 10-19/20") == (10, 19, 20)
        assert parse_content_range("bytes 10-19/*") == (10, 19, None)
        assert parse_content_range("bytes 10-20/20") is None
        assert parse_content_range("bytes 19-10/20") is None
        assert parse_content_range("items 1-2/3") is None
        assert parse_content_range(None) is None

    def test_retry_after_accepts_seconds_and_http_dates(self) -> None:
        """Retry-After is read as delta-seconds or as an HTTP-date relative to now."""
        now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
        assert parse_retry_after("7") == 7.0
        assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
        assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
        assert parse_retry_after("soon") is None

    def test_aiohttp_errors_become_retryable_bootsync_errors(self) -> None:
        """A payload error is a truncated body; a socket timeout is a stall."""
        payload = aiohttp.ClientPayloadError("cut")
        assert isinstance(translate_error(payload, url="u", body_started=True), TruncatedBodyError)
        assert isinstance(
            translate_error(aiohttp.SocketTimeoutError(), url="u", body_started=True), StallError
        )

    def test_a_malformed_request_is_refused(self) -> None:
        """DownloadRequest refuses a sha256 that is not 64 lowercase hex digits."""
        with pytest.raises(ValueError, match="sha256"):
            DownloadRequest(url="http://x/", sha256="ABC", size=1)
