"""The body of ``POST boot-resources/``: small fields in memory, ``content`` to disk.

Multipart bodies are read part by part (``request.multipart()``), so an image
sent in one request streams into the upload area and is hashed on the way,
never held whole and never bound by the app's ``client_max_size``. Parts may be
base64-encoded (python-libmaas and the maas CLI send them so); the bare part of
libmaas's empty body is ignored. Other bodies go through ``read_params``.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, web
from multidict import MultiDict, MultiDictProxy

from region.api.http import Params, ValidationError, read_params
from region.images.upload_area import Staged, UploadArea

CONTENT = "content"
MAX_FIELD = 1 << 20
_READ_CHUNK = 1 << 20
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_PLAIN_ENCODINGS = frozenset({"", "7bit", "8bit", "binary"})


class Base64Stream:
    """Decodes base64 that arrives in arbitrary pieces (whitespace ignored)."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> bytes:
        """The bytes decodable so far; a partial quantum waits for the next piece."""
        data = self._rest + _NOT_BASE64.sub(b"", data)
        cut = len(data) - len(data) % 4
        self._rest = data[cut:]
        return binascii.a2b_base64(data[:cut]) if cut else b""

    def finish(self) -> None:
        """Raise ValueError when the stream ended inside a quantum."""
        if self._rest:
            raise ValueError("truncated base64 content")


def _malformed(detail: str) -> ValidationError:
    return ValidationError.field("__all__", f"Malformed multipart body: {detail}")


def _is_base64(part: BodyPartReader) -> bool:
    encoding = part.headers.get("Content-Transfer-Encoding", "").strip().lower()
    if encoding not in _PLAIN_ENCODINGS and encoding != "base64":
        raise _malformed(f"unsupported Content-Transfer-Encoding {encoding!r}")
    return encoding == "base64"


async def _raw_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(_READ_CHUNK):
        yield bytes(chunk)


async def _small_part(part: BodyPartReader) -> bytes:
    data = bytearray()
    async for chunk in _raw_chunks(part):
        data += chunk
        if len(data) > 2 * MAX_FIELD:  # base64 is 4/3 of the value, plus line breaks
            raise ValidationError.field(part.name or "__all__", "This field is too large.")
    if _is_base64(part):
        return binascii.a2b_base64(_NOT_BASE64.sub(b"", bytes(data)))
    return bytes(data)


async def _stage_content(part: BodyPartReader, area: UploadArea) -> Staged:
    if not _is_base64(part):
        return await area.stage(_raw_chunks(part))
    decoder = Base64Stream()

    async def decoded() -> AsyncIterator[bytes]:
        async for chunk in _raw_chunks(part):
            yield chunk
        decoder.finish()

    # Decoding runs in the staging worker thread with the hashing and writing.
    return await area.stage(decoded(), transform=decoder.feed)


async def read_upload_form(request: web.Request, area: UploadArea) -> tuple[Params, Staged | None]:
    """The fields of ``request`` and its ``content``, staged in ``area`` (None if absent).

    Raises ValidationError for a malformed body; nothing stays staged then.
    """
    if not request.content_type.startswith("multipart/"):
        params = await read_params(request)
        content = params.file_or_value(CONTENT)
        if content is None:
            return params, None

        async def one() -> AsyncIterator[bytes]:
            yield content

        return params, await area.stage(one())
    values: MultiDict[str] = MultiDict(request.query)
    files: dict[str, bytes] = {}
    staged: Staged | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            staged = await _read_part(part, area, values, files, staged)
    except BaseException as exc:
        if staged is not None:
            await area.drop_staged(staged)
        if isinstance(exc, (ValueError, AssertionError, binascii.Error)) and not isinstance(
            exc, ValidationError
        ):
            raise _malformed(str(exc)) from None
        raise
    return Params(values=MultiDictProxy(values), files=files), staged


async def _read_part(
    part: object,
    area: UploadArea,
    values: MultiDict[str],
    files: dict[str, bytes],
    staged: Staged | None,
) -> Staged | None:
    """Read one part into ``values``/``files``, or stage it; the staged content so far."""
    if not isinstance(part, BodyPartReader):
        raise _malformed("nested multipart")
    if not part.headers:
        await part.read()  # python-libmaas's empty body: one bare part
    elif not part.name:
        raise _malformed("a part has no name")
    elif part.name == CONTENT:
        if staged is not None:
            raise ValidationError.field(CONTENT, "Send the content once.")
        return await _stage_content(part, area)
    elif part.filename is not None:
        files[part.name] = await _small_part(part)
    else:
        values.add(part.name, (await _small_part(part)).decode("utf-8"))
    return staged
