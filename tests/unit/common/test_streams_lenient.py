"""read_stream(lenient=True): a bad version or an unreadable document is refused, the rest read."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from common.transfer.streams import UNSIGNED_INDEX_PATH, TrustPolicy, http_documents, read_stream
from simplestreams import StreamFormatError
from tests.fakes.upstream import FakeUpstream

SHA = "a" * 64


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def index_doc(*content_ids: str) -> dict[str, Any]:
    """An unsigned index listing one products document per content id."""
    entries = {
        cid: {"path": f"streams/v1/{cid}.json", "format": "products:1.0", "products": ["p"]}
        for cid in content_ids
    }
    return {"format": "index:1.0", "index": entries}


def products_doc(content_id: str, *, size: int = 3) -> dict[str, Any]:
    """Two versions of one product; the first one's item has ``size``."""
    item = {"ftype": "squashfs", "path": "noble/squashfs", "sha256": SHA, "size": 3}
    return {
        "format": "products:1.0",
        "content_id": content_id,
        "products": {
            "p": {
                "versions": {
                    "1": {"items": {"f": {**item, "size": size}}},
                    "2": {"items": {"f": item}},
                }
            }
        },
    }


def serve(upstream: FakeUpstream, broken: bytes) -> None:
    """Serve documents a (fine) and b (``broken``) under one unsigned index."""
    upstream.add_file(UNSIGNED_INDEX_PATH, _json(index_doc("com.example:a", "com.example:b")))
    upstream.add_file("streams/v1/com.example:a.json", _json(products_doc("com.example:a")))
    upstream.add_file("streams/v1/com.example:b.json", broken)


async def test_an_unreadable_document_is_refused_and_the_others_are_read(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A products document nested too deeply is refused, named by its URL; its sibling is read."""
    serve(
        fake_upstream, b'{"format": "products:1.0", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )
    get = http_documents(session, fake_upstream.url("/"))
    stream = await read_stream(get, UNSIGNED_INDEX_PATH, TrustPolicy(None), lenient=True)
    assert list(stream.products) == list(stream.documents) == ["com.example:a"]
    [refusal] = stream.refusals
    assert refusal.location == fake_upstream.url("streams/v1/com.example:b.json")
    assert "nested too deeply" in refusal.reason
    with pytest.raises(StreamFormatError, match="nested too deeply"):
        await read_stream(get, UNSIGNED_INDEX_PATH, TrustPolicy(None))


async def test_a_bad_item_refuses_only_its_version(
    fake_upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """A negative size drops its version, listed in refusals; strict reading raises for it."""
    serve(fake_upstream, _json(products_doc("com.example:b", size=-1)))
    get = http_documents(session, fake_upstream.url("/"))
    stream = await read_stream(get, UNSIGNED_INDEX_PATH, TrustPolicy(None), lenient=True)
    assert list(stream.products["com.example:a"].products["p"].versions) == ["1", "2"]
    assert list(stream.products["com.example:b"].products["p"].versions) == ["2"]
    assert [r.location.rsplit(": ", 1)[1] for r in stream.refusals] == [
        "products[p].versions[1].items[f].size"
    ]
    with pytest.raises(StreamFormatError, match="must not be negative"):
        await read_stream(get, UNSIGNED_INDEX_PATH, TrustPolicy(None))
