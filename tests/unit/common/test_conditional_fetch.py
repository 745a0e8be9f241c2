"""Conditional metadata reads: ETag / Last-Modified, 304 reuse, and what a cache keeps."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from common.errors import SignatureError
from common.mirror.http_cache import MirrorDocumentCache
from common.transfer.fetch import CachedDocument, fetch_conditional
from common.transfer.retry import RetryPolicy
from common.transfer.streams import (
    SIGNED_INDEX_PATH,
    TrustPolicy,
    http_documents,
    keep_verified,
    read_stream,
)
from common.trust.keyrings import Keyring
from tests.fakes.gpg import ThrowawayKey, clearsign
from tests.fakes.upstream import FakeUpstream

FAST = RetryPolicy(retries=1, backoff_base=0.01, backoff_max=0.02)
CID = "com.example:v3"


class MemoryCache:
    """A DocumentCache in a dict (the region's and the mirror's are tested below and elsewhere)."""

    def __init__(self) -> None:
        self.kept: dict[str, CachedDocument] = {}

    async def get(self, url: str) -> CachedDocument | None:
        """What is kept for ``url``."""
        return self.kept.get(url)

    async def put(self, url: str, document: CachedDocument) -> None:
        """Keep ``document``."""
        self.kept[url] = document


async def publish(upstream: FakeUpstream, key: ThrowawayKey, version: str = "1") -> None:
    """A signed index listing one signed products document (whose version is ``version``)."""
    index = {
        "format": "index:1.0",
        "index": {CID: {"path": f"streams/v1/{CID}.sjson", "format": "products:1.0"}},
    }
    item = {"ftype": "squashfs", "path": "f", "sha256": "a" * 64, "size": 3}
    products = {
        "format": "products:1.0",
        "content_id": CID,
        "products": {"p": {"versions": {version: {"items": {"s": item}}}}},
    }
    for path, doc in ((SIGNED_INDEX_PATH, index), (f"streams/v1/{CID}.sjson", products)):
        signed = await asyncio.to_thread(clearsign, key, json.dumps(doc).encode())
        upstream.add_file(path, signed)


async def test_a_document_not_modified_is_answered_304_and_the_kept_bytes_are_reused(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """The second GET carries If-None-Match and If-Modified-Since, gets no body, returns the kept one."""
    fake_upstream.add_file("/doc.json", b"{}" * 1000)
    url = fake_upstream.url("/doc.json")
    first = await fetch_conditional(session, url, cached=None, policy=FAST)
    assert first.etag is not None
    assert first.last_modified is not None
    served = fake_upstream.served_bytes()
    again = await fetch_conditional(session, url, cached=first, policy=FAST)
    assert again is first
    assert fake_upstream.served_bytes() == served
    sent = fake_upstream.requests[-1].headers
    assert sent["If-None-Match"] == first.etag
    assert sent["If-Modified-Since"] == first.last_modified


async def test_a_changed_document_is_fetched_whole_with_its_new_validators(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A kept ETag that no longer matches gets a 200 with the new body and the new ETag."""
    fake_upstream.add_file("/doc.json", b"old")
    url = fake_upstream.url("/doc.json")
    old = await fetch_conditional(session, url, cached=None, policy=FAST)
    fake_upstream.add_file("/doc.json", b"new")
    new = await fetch_conditional(session, url, cached=old, policy=FAST)
    assert new.body == b"new"
    assert new.etag not in (None, old.etag)


async def test_last_modified_alone_is_enough_to_ask_conditionally(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A document kept with only a Last-Modified is asked for with If-Modified-Since and reused."""
    fake_upstream.add_file("/doc.json", b"{}")
    url = fake_upstream.url("/doc.json")
    first = await fetch_conditional(session, url, cached=None, policy=FAST)
    dated = CachedDocument(body=first.body, last_modified=first.last_modified)
    again = await fetch_conditional(session, url, cached=dated, policy=FAST)
    assert again is dated
    assert "If-None-Match" not in fake_upstream.requests[-1].headers


async def test_a_stream_read_twice_transfers_no_document_body_the_second_time(
    fake_upstream: FakeUpstream,
    session: aiohttp.ClientSession,
    gpg_signer: ThrowawayKey,
    gpg_keyring: Keyring,
) -> None:
    """With a cache, an unchanged stream is read again from 304s and verifies the same."""
    await publish(fake_upstream, gpg_signer)
    cache = MemoryCache()
    trust = TrustPolicy(gpg_keyring)
    base = fake_upstream.url("/")
    get = http_documents(session, base, cache=cache)
    first = await read_stream(get, SIGNED_INDEX_PATH, trust, on_verified=keep_verified(cache))
    assert len(cache.kept) == 2
    served = fake_upstream.served_bytes()
    second = await read_stream(get, SIGNED_INDEX_PATH, trust, on_verified=keep_verified(cache))
    assert fake_upstream.served_bytes() == served
    assert second.products == first.products
    assert second.signer == first.signer


async def test_a_document_that_fails_verification_is_not_kept(
    fake_upstream: FakeUpstream,
    session: aiohttp.ClientSession,
    gpg_signer: ThrowawayKey,
    gpg_keyring: Keyring,
) -> None:
    """A corrupted answer is never reused: once the upstream serves it right, it is read whole."""
    await publish(fake_upstream, gpg_signer)
    fake_upstream.flip_byte(SIGNED_INDEX_PATH, offset=60, times=1)
    cache = MemoryCache()
    trust = TrustPolicy(gpg_keyring)
    get = http_documents(session, fake_upstream.url("/"), cache=cache, limits=None)
    with pytest.raises(SignatureError):
        await read_stream(get, SIGNED_INDEX_PATH, trust, on_verified=keep_verified(cache))
    assert cache.kept == {}
    stream = await read_stream(get, SIGNED_INDEX_PATH, trust, on_verified=keep_verified(cache))
    assert list(stream.products) == [CID]
    assert len(cache.kept) == 2


async def test_a_new_products_document_replaces_the_kept_one(
    fake_upstream: FakeUpstream,
    session: aiohttp.ClientSession,
    gpg_signer: ThrowawayKey,
    gpg_keyring: Keyring,
) -> None:
    """After the upstream publishes a new version, the next read sees it and keeps it."""
    await publish(fake_upstream, gpg_signer, version="1")
    cache = MemoryCache()
    trust = TrustPolicy(gpg_keyring)
    get = http_documents(session, fake_upstream.url("/"), cache=cache)
    await read_stream(get, SIGNED_INDEX_PATH, trust, on_verified=keep_verified(cache))
    await publish(fake_upstream, gpg_signer, version="2")
    stream = await read_stream(get, SIGNED_INDEX_PATH, trust, on_verified=keep_verified(cache))
    assert list(stream.products[CID].products["p"].versions) == ["2"]
    assert b'"2"' in next(
        d.body for u, d in cache.kept.items() if u.endswith(".sjson") and CID in u
    )


class TestMirrorDocumentCache:
    async def test_a_kept_document_reads_back_with_its_validators(self, tmp_path: Path) -> None:
        """What is put under .bootsync/http-cache/ comes back byte for byte, for that URL only."""
        cache = MirrorDocumentCache(tmp_path)
        doc = CachedDocument(body=b"signed\nbytes", etag='"e"', last_modified="Mon, 01 Jan 2024")
        await cache.put("http://u/a", doc)
        assert await cache.get("http://u/a") == doc
        assert await cache.get("http://u/b") is None
        assert cache.path_for("http://u/a").parent == tmp_path / "http-cache"

    async def test_a_damaged_file_counts_as_missing(self, tmp_path: Path) -> None:
        """A kept body that no longer matches its sha256 is not reused (the document is fetched)."""
        cache = MirrorDocumentCache(tmp_path)
        await cache.put("http://u/a", CachedDocument(body=b"abc", etag='"e"'))
        path = cache.path_for("http://u/a")
        path.write_bytes(path.read_bytes()[:-1] + b"X")
        assert await cache.get("http://u/a") is None

    async def test_a_read_only_cache_writes_nothing(self, tmp_path: Path) -> None:
        """A dry run's cache answers from what is kept and leaves the state directory alone."""
        cache = MirrorDocumentCache(tmp_path, read_only=True)
        await cache.put("http://u/a", CachedDocument(body=b"abc", etag='"e"'))
        assert not (tmp_path / "http-cache").exists()
        assert await cache.get("http://u/a") is None
