"""read_stream against a real HTTP upstream and real gpg signatures; resolve_source."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import aiohttp
import pytest

from common.errors import (
    MetadataTooLargeError,
    SignatureError,
    TamperedPayloadError,
    UnknownKeyError,
)
from common.transfer.limits import TransferLimits
from common.transfer.streams import (
    SIGNED_INDEX_PATH,
    UNSIGNED_INDEX_PATH,
    FetchedDocument,
    StreamSource,
    TrustPolicy,
    http_documents,
    read_stream,
    resolve_source,
)
from common.trust.keyrings import Keyring
from simplestreams import StreamFormatError, flatten
from tests.fakes.gpg import ThrowawayKey, clearsign, keyring_for
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually

SHA = "a" * 64


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def index_doc(*content_ids: str, suffix: str = ".json") -> dict[str, Any]:
    """An index listing a products document per content id, plus an informational entry."""
    entries: dict[str, Any] = {
        cid: {"path": f"streams/v1/{cid}{suffix}", "format": "products:1.0", "products": ["p"]}
        for cid in content_ids
    }
    entries["info"] = {"format": "products:1.0"}  # no path: nothing to read
    return {"format": "index:1.0", "updated": "Fri, 18 Jul 2025 00:00:00 +0000", "index": entries}


def products_doc(content_id: str) -> dict[str, Any]:
    """A products document with one file."""
    item = {"ftype": "squashfs", "path": "noble/squashfs", "sha256": SHA, "size": 3}
    return {
        "format": "products:1.0",
        "content_id": content_id,
        "products": {"p": {"os": "ubuntu", "versions": {"1": {"items": {"squashfs": item}}}}},
    }


async def publish_signed(upstream: FakeUpstream, key: ThrowawayKey, *content_ids: str) -> None:
    """Serve a stream whose index and products documents are clearsigned by ``key``."""
    upstream.add_file(
        SIGNED_INDEX_PATH,
        await asyncio.to_thread(clearsign, key, _json(index_doc(*content_ids, suffix=".sjson"))),
    )
    for cid in content_ids:
        signed = await asyncio.to_thread(clearsign, key, _json(products_doc(cid)))
        upstream.add_file(f"streams/v1/{cid}.sjson", signed)


class TestResolveSource:
    def test_a_mirror_root_gets_the_signed_or_the_unsigned_index(self) -> None:
        """A root URL (with or without its slash) points at index.sjson, or index.json."""
        assert resolve_source("http://m/x", signed=True) == StreamSource(
            base_url="http://m/x/", index_path=SIGNED_INDEX_PATH
        )
        unsigned = resolve_source("http://m/x/", signed=False)
        assert unsigned.index_url == "http://m/x/streams/v1/index.json"
        assert not unsigned.signed

    def test_a_full_index_url_is_split_into_root_and_index_path(self) -> None:
        """An explicit index URL keeps its file name; a .json one is read unsigned."""
        where = resolve_source("http://m/x/streams/v1/com.example%3Av3.json", signed=True)
        assert (where.base_url, where.index_path) == (
            "http://m/x/",
            "streams/v1/com.example:v3.json",
        )
        assert where.index_url == "http://m/x/streams/v1/com.example:v3.json"
        assert not where.signed


class TestReadStream:
    async def test_every_products_document_of_the_index_is_read_and_verified(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        gpg_signer: ThrowawayKey,
        gpg_keyring: Keyring,
    ) -> None:
        """Both listed documents come back parsed, in index order, with the signer named."""
        await publish_signed(fake_upstream, gpg_signer, "com.example:a", "com.example:b")
        stream = await read_stream(
            http_documents(session, fake_upstream.url("/")),
            SIGNED_INDEX_PATH,
            TrustPolicy(gpg_keyring, fingerprint=gpg_signer.fingerprint),
        )
        assert list(stream.products) == ["com.example:a", "com.example:b"]
        assert stream.products["com.example:b"].content_id == "com.example:b"
        assert stream.signer == gpg_signer.fingerprint
        assert stream.documents["com.example:a"].url == fake_upstream.url(
            "streams/v1/com.example:a.sjson"
        )
        paths = [r.path for r in fake_upstream.requests]
        assert paths[0] == "/streams/v1/index.sjson"
        assert sorted(paths[1:]) == [
            "/streams/v1/com.example:a.sjson",
            "/streams/v1/com.example:b.sjson",
        ]

    async def test_the_products_documents_are_fetched_at_once(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession
    ) -> None:
        """While one products document is stalled, the next one is already being fetched."""
        fake_upstream.add_file(
            UNSIGNED_INDEX_PATH, _json(index_doc("com.example:a", "com.example:b"))
        )
        for cid in ("com.example:a", "com.example:b"):
            fake_upstream.add_file(f"streams/v1/{cid}.json", _json(products_doc(cid)))
        fake_upstream.stall("streams/v1/com.example:a.json", after_bytes=1, seconds=3)
        reading = asyncio.create_task(
            read_stream(
                http_documents(session, fake_upstream.url("/")),
                UNSIGNED_INDEX_PATH,
                TrustPolicy(None),
            )
        )
        await eventually(
            lambda: fake_upstream.requests_for("streams/v1/com.example:b.json"),
            "the second document requested while the first stalls",
            timeout=2.5,
        )
        stream = await reading
        assert list(stream.products) == ["com.example:a", "com.example:b"]

    async def test_a_signature_by_another_key_of_the_keyring_is_refused_when_pinned(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        gpg_signer: ThrowawayKey,
        gpg_stranger: ThrowawayKey,
    ) -> None:
        """With a pinned fingerprint, only that key's signature counts, whatever the keyring holds."""
        await publish_signed(fake_upstream, gpg_stranger, "com.example:a")
        both = await asyncio.to_thread(keyring_for, gpg_signer, gpg_stranger)
        get = http_documents(session, fake_upstream.url("/"))
        assert (await read_stream(get, SIGNED_INDEX_PATH, TrustPolicy(both))).signer == (
            gpg_stranger.fingerprint
        )
        with pytest.raises(UnknownKeyError, match="not by the pinned key"):
            await read_stream(
                get, SIGNED_INDEX_PATH, TrustPolicy(both, fingerprint=gpg_signer.fingerprint)
            )

    async def test_a_tampered_products_document_is_refused(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        gpg_signer: ThrowawayKey,
        gpg_keyring: Keyring,
    ) -> None:
        """A products document changed after signing fails the gate, naming its URL."""
        await publish_signed(fake_upstream, gpg_signer, "com.example:a")
        path = "/streams/v1/com.example:a.sjson"
        fake_upstream.files[path] = fake_upstream.files[path].replace(b'"size": 3', b'"size": 4')
        with pytest.raises(TamperedPayloadError, match=r"com\.example:a\.sjson"):
            await read_stream(
                http_documents(session, fake_upstream.url("/")),
                SIGNED_INDEX_PATH,
                TrustPolicy(gpg_keyring),
            )

    async def test_unsigned_json_is_read_only_when_no_keyring_is_given(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        gpg_signer: ThrowawayKey,
    ) -> None:
        """Without a keyring plain JSON is accepted and a clearsigned index is refused."""
        fake_upstream.add_file(UNSIGNED_INDEX_PATH, _json(index_doc("com.example:a")))
        fake_upstream.add_file(
            "streams/v1/com.example:a.json", _json(products_doc("com.example:a"))
        )
        await publish_signed(fake_upstream, gpg_signer, "com.example:a")
        get = http_documents(session, fake_upstream.url("/"))
        stream = await read_stream(get, UNSIGNED_INDEX_PATH, TrustPolicy(None))
        assert list(stream.products) == ["com.example:a"]
        assert stream.signer is None
        with pytest.raises(SignatureError, match="no keyring"):
            await read_stream(get, SIGNED_INDEX_PATH, TrustPolicy(None))

    async def test_a_products_document_under_another_content_id_is_refused(
        self, fake_upstream: FakeUpstream, session: aiohttp.ClientSession
    ) -> None:
        """The index's content id must be the one the products document declares."""
        fake_upstream.add_file(UNSIGNED_INDEX_PATH, _json(index_doc("com.example:a")))
        fake_upstream.add_file(
            "streams/v1/com.example:a.json", _json(products_doc("com.example:z"))
        )
        with pytest.raises(StreamFormatError, match=r"content_id: 'com\.example:z', but the index"):
            await read_stream(
                http_documents(session, fake_upstream.url("/")),
                UNSIGNED_INDEX_PATH,
                TrustPolicy(None),
            )

    async def test_the_loop_keeps_ticking_while_each_large_document_is_parsed(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        gpg_signer: ThrowawayKey,
        gpg_keyring: Keyring,
        log_events: list[MutableMapping[str, Any]],
    ) -> None:
        """A heartbeat task keeps ticking after each signature checks out, while its text is parsed."""
        big = "com.example:big"
        index = index_doc(big, suffix=".sjson")
        for n in range(40_000):  # entries without a path: only parsed, nothing fetched
            index["index"][f"com.example:info{n}"] = {"format": "products:1.0", "products": ["p"]}
        products = products_doc(big)
        item = products["products"]["p"]["versions"]["1"]["items"]["squashfs"]
        for n in range(8_000):
            products["products"][f"p{n}"] = {
                "os": "ubuntu",
                "versions": {"1": {"items": {"squashfs": {**item, "path": f"{n}/squashfs"}}}},
            }
        for path, doc in ((SIGNED_INDEX_PATH, index), (f"streams/v1/{big}.sjson", products)):
            body = json.dumps(doc, indent=1).encode()  # gpg clearsigns lines of < 20 KB only
            fake_upstream.add_file(path, await asyncio.to_thread(clearsign, gpg_signer, body))
        fetch = http_documents(session, fake_upstream.url("/"))
        phase = "start"

        async def get(path: str) -> FetchedDocument:
            nonlocal phase
            phase = f"fetching {path}"
            document = await fetch(path)
            phase = f"read {path}"
            return document

        def verified() -> int:
            return sum(1 for e in list(log_events) if e["event"] == "signature_verified")

        ticks: list[tuple[str, int]] = []  # (phase, signatures verified so far) at each tick

        async def heartbeat() -> None:
            while True:
                ticks.append((phase, verified()))
                await asyncio.sleep(0)

        beating = asyncio.create_task(heartbeat())
        try:
            stream = await read_stream(get, SIGNED_INDEX_PATH, TrustPolicy(gpg_keyring))
        finally:
            beating.cancel()
        assert len(stream.index.entries) == 40_002  # with index_doc's own "info"
        assert len(list(flatten(stream.products[big]))) == 8_001
        # Ticks after the index's signature was verified and before the products document
        # was asked for: the index was parsed while the loop ran. Same for the products.
        assert ticks.count((f"read {SIGNED_INDEX_PATH}", 1)) >= 10
        assert ticks.count((f"read streams/v1/{big}.sjson", 2)) >= 10

    async def test_a_products_document_over_the_maximum_is_refused_unread(
        self,
        fake_upstream: FakeUpstream,
        session: aiohttp.ClientSession,
        gpg_signer: ThrowawayKey,
        gpg_keyring: Keyring,
    ) -> None:
        """A products document larger than max_metadata_bytes fails the read as metadata_too_large."""
        await publish_signed(fake_upstream, gpg_signer, "com.example:a")
        path = "streams/v1/com.example:a.sjson"
        fake_upstream.add_file(path, fake_upstream.files["/" + path] + b" " * (70 << 10))
        limits = TransferLimits(max_metadata_bytes=64 << 10)
        with pytest.raises(MetadataTooLargeError, match=r"com\.example:a\.sjson") as refused:
            await read_stream(
                http_documents(session, fake_upstream.url("/"), limits=limits),
                SIGNED_INDEX_PATH,
                TrustPolicy(gpg_keyring),
            )
        assert refused.value.reason == "metadata_too_large"
        assert refused.value.limit == 64 << 10

    def test_a_pinned_fingerprint_without_a_keyring_is_a_programming_error(self) -> None:
        """A policy pinning a key but holding no keyring cannot be made."""
        with pytest.raises(ValueError, match="needs the keyring"):
            TrustPolicy(None, fingerprint="F" * 40)
