"""The API's one multipart reader, behind a real aiohttp server: base64, sizes, streaming."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import MultiDict
from pytest_aiohttp import AiohttpClient

from region.api.multipart import (
    MAX_FIELD,
    MAX_FIELDS,
    Base64Stream,
    FormError,
    StreamTo,
    read_multipart,
)

BOUNDARY = "XyZzY"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"
DROPPED = web.AppKey("dropped", list)

Part = tuple[dict[str, str], bytes]
Call = Callable[[bytes], Awaitable[tuple[int, dict[str, Any]]]]


def field(name: str, data: bytes, *, filename: str | None = None, encoding: str = "") -> Part:
    """One form-data part; ``encoding`` is its Content-Transfer-Encoding (none when empty)."""
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    headers = {"Content-Disposition": disposition}
    if encoding:
        headers["Content-Transfer-Encoding"] = encoding
    return headers, data


def b64(name: str, data: bytes, *, filename: str | None = None) -> Part:
    """A part base64-encoded with line breaks, as the maas CLI sends it."""
    return field(name, base64.encodebytes(data), filename=filename, encoding="base64")


def body(parts: Sequence[Part]) -> bytes:
    """The multipart body of ``parts``, framed by hand."""
    out = b""
    for headers, data in parts:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out += f"--{BOUNDARY}\r\n{head}\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


async def handle(request: web.Request) -> web.Response:
    """Read the body; answer what was read, or 400 ``{field: [reason]}``."""

    async def sink(chunks: AsyncIterator[bytes]) -> bytes:
        data = bytearray()
        async for chunk in chunks:
            data += chunk
        return bytes(data)

    async def drop(data: bytes) -> None:
        request.app[DROPPED].append(data)

    values: MultiDict[str] = MultiDict()
    files: dict[str, bytes] = {}
    try:
        content = await read_multipart(request, values, files, StreamTo("content", sink, drop))
    except FormError as exc:
        return web.json_response({exc.field: [exc.reason]}, status=400)
    return web.json_response(
        {
            "values": [[k, v] for k, v in values.items()],
            "files": {k: base64.b64encode(v).decode() for k, v in files.items()},
            "content": None if content is None else hashlib.sha256(content).hexdigest(),
            "content_size": None if content is None else len(content),
        }
    )


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> TestClient[Any, Any]:
    """A real server whose one route reads multipart bodies."""
    app = web.Application()
    app[DROPPED] = []
    app.router.add_post("/", handle)
    return await aiohttp_client(app)


@pytest.fixture
def call(client: TestClient[Any, Any]) -> Call:
    """POST a raw multipart body; (status, JSON answer)."""

    async def post(data: bytes) -> tuple[int, dict[str, Any]]:
        resp = await client.post("/", data=io.BytesIO(data), headers={"Content-Type": CTYPE})
        answer: dict[str, Any] = json.loads(await resp.read())
        return resp.status, answer

    return post


async def test_base64_and_plain_parts_read_the_same(call: Call) -> None:
    """Base64 parts (line breaks skipped) and plain parts give the same values and files."""
    blob = bytes(range(256)) * 10
    encoded = body([b64("name", "Ubuntu – Noble".encode()), b64("key", blob, filename="k")])
    plain = body([field("name", "Ubuntu – Noble".encode()), field("key", blob, filename="k")])
    for raw in (encoded, plain):
        status, answer = await call(raw)
        assert status == 200
        assert answer["values"] == [["name", "Ubuntu – Noble"]]
        assert base64.b64decode(answer["files"]["key"]) == blob


async def test_repeated_names_and_libmaas_bare_part(call: Call) -> None:
    """Repeated names stay in order; a part without headers (libmaas's empty body) is skipped."""
    raw = body([({}, b""), b64("arches", b"amd64"), b64("arches", b"arm64")])
    status, answer = await call(raw)
    assert status == 200
    assert answer["values"] == [["arches", "amd64"], ["arches", "arm64"]]


async def test_the_streamed_field_has_no_size_limit_and_is_decoded(call: Call) -> None:
    """content of three times the field limit, base64 with line breaks, reaches the sink whole."""
    image = hashlib.sha256(b"seed").digest() * (3 * MAX_FIELD // 32 + 7)
    status, answer = await call(body([field("name", b"x"), b64("content", image)]))
    assert status == 200
    assert (answer["content"], answer["content_size"]) == (
        hashlib.sha256(image).hexdigest(),
        len(image),
    )


async def test_a_field_past_the_limit_is_refused_by_name(call: Call) -> None:
    """One byte past MAX_FIELD once decoded: 400 naming the field, base64 or not."""
    for part in (field("keyring", b"k" * (MAX_FIELD + 1)), b64("keyring", b"k" * (MAX_FIELD + 1))):
        status, answer = await call(body([part]))
        assert status == 400
        assert answer["keyring"][0].startswith("This field is too large")
    status, _ = await call(body([b64("keyring", b"k" * MAX_FIELD)]))
    assert status == 200


async def test_fields_together_past_the_budget_are_refused(call: Call) -> None:
    """Fields each within MAX_FIELD but past MAX_FIELDS together: 400 on the whole body."""
    count = MAX_FIELDS // MAX_FIELD + 1
    status, answer = await call(body([field(f"f{n}", b"v" * MAX_FIELD) for n in range(count)]))
    assert status == 400
    assert answer["__all__"][0].startswith("The fields are too large")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"QQ==QUJD", "after padding"),
        (b"QUJDRA", "truncated base64"),
        (b"=QUJ", "padding"),
    ],
    ids=["data-after-padding", "cut-short", "leading-padding"],
)
async def test_broken_base64_is_refused_on_its_field(call: Call, data: bytes, reason: str) -> None:
    """Base64 that is not well formed is a 400 on the part's field, whether value or content."""
    for name in ("title", "content"):
        status, answer = await call(body([field(name, data, encoding="base64")]))
        assert status == 400
        assert reason in answer[name][0]


async def test_an_unknown_transfer_encoding_is_refused(call: Call) -> None:
    """quoted-printable is not decoded silently: 400 naming the field."""
    status, answer = await call(body([field("title", b"a=3Db", encoding="quoted-printable")]))
    assert status == 400
    assert "quoted-printable" in answer["title"][0]


async def test_a_value_that_is_not_utf8_is_refused(call: Call) -> None:
    """A value part must be UTF-8; the same bytes as a file part are fine."""
    status, answer = await call(body([field("title", b"\xff\xfe")]))
    assert (status, answer) == (400, {"title": ["Not UTF-8 text."]})
    status, _ = await call(body([field("title", b"\xff\xfe", filename="t")]))
    assert status == 200


async def test_a_refused_body_drops_what_the_sink_made(
    call: Call, client: TestClient[Any, Any]
) -> None:
    """content sent twice, or followed by a bad part: 400, and the first content is dropped."""
    dropped = client.app[DROPPED]
    status, answer = await call(body([field("content", b"one"), field("content", b"two")]))
    assert (status, answer) == (400, {"content": ["Send this field once."]})
    status, answer = await call(body([field("content", b"one"), field("x", b"\xff")]))
    assert status == 400
    assert dropped == [b"one", b"one"]


async def test_a_body_cut_short_or_without_names_is_malformed(call: Call) -> None:
    """A body that ends mid-part, or a part without a name, is a 400 on the whole body."""
    whole = body([field("title", b"abc")])
    status, answer = await call(whole[: whole.index(b"abc") + 2])
    assert status == 400
    assert answer["__all__"][0].startswith("Malformed multipart body")
    status, answer = await call(body([({"Content-Disposition": "form-data"}, b"x")]))
    assert (status, answer) == (
        400,
        {"__all__": ["Malformed multipart body: a part has no name."]},
    )


def test_base64_stream_decodes_across_any_split() -> None:
    """Fed in pieces cut anywhere (line breaks included), the stream decodes as one call does."""
    data = bytes(range(256)) * 3 + b"end"
    encoded = base64.encodebytes(data)
    for step in (1, 3, 5, 77, 1000):
        stream = Base64Stream()
        out = b"".join(stream.feed(encoded[i : i + step]) for i in range(0, len(encoded), step))
        stream.finish()
        assert out == data
