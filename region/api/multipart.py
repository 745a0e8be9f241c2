"""The one reader of ``multipart/form-data`` request bodies, with one set of rules.

- Parts are read one at a time as they arrive (``request.multipart()``); a
  body is never held whole, and never bound by the app's ``client_max_size``.
- ``Content-Transfer-Encoding: base64`` (python-libmaas and the maas CLI send
  every part so) is decoded. Characters outside the base64 alphabet (line
  breaks) are skipped; anything else that is not well-formed base64 (a group
  of 4 cut short at the end, data after the padding) is refused on the part's
  field. ``7bit``, ``8bit``, ``binary`` or no encoding: the bytes as they are.
  Any other encoding is refused.
- Size: a field held in memory is at most :data:`MAX_FIELD` bytes once
  decoded, and all of them together at most :data:`MAX_FIELDS`. The one field
  a caller may stream (:class:`StreamTo`, an image's ``content``) is not held:
  its decoded bytes go to the caller's sink as they arrive, with no limit here.
- A part without headers (python-libmaas's empty body) is skipped; a nested
  multipart or a part without a name is refused. A part with a filename is a
  file (bytes); any other is a value, which must be UTF-8.

Every refusal is a :class:`FormError` naming the field (``__all__`` for the
body as a whole) and the reason; the API turns it into a 400.
"""

from __future__ import annotations

import asyncio
import binascii
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import BodyPartReader, web
from multidict import MultiDict

__all__ = ["MAX_FIELD", "MAX_FIELDS", "Base64Stream", "FormError", "StreamTo", "read_multipart"]

MAX_FIELD = 1 << 20
MAX_FIELDS = 4 << 20
WHOLE_BODY = "__all__"
_READ_CHUNK = 1 << 20
_DECODE_INLINE = 64 << 10  # smaller base64 pieces are decoded on the loop: a thread hop costs more
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_PLAIN_ENCODINGS = frozenset({"", "7bit", "8bit", "binary"})

T = TypeVar("T")


class FormError(Exception):
    """A multipart body refused: the ``field`` at fault (``__all__``: the body) and why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True)
class StreamTo(Generic[T]):
    """The one field read as a stream: ``sink`` consumes its decoded bytes.

    ``drop`` undoes what ``sink`` made when a later part is refused.
    """

    field: str
    sink: Callable[[AsyncIterator[bytes]], Awaitable[T]]
    drop: Callable[[T], Awaitable[None]]


class Base64Stream:
    """Decodes base64 that arrives in arbitrary pieces (non-alphabet characters skipped)."""

    def __init__(self) -> None:
        self._rest = b""
        self._padded = False

    def feed(self, data: bytes) -> bytes:
        """The bytes decodable so far; a partial group of 4 waits for the next piece.

        Raises ValueError (binascii.Error) for data that is not base64.
        """
        data = self._rest + _NOT_BASE64.sub(b"", data)
        cut = len(data) - len(data) % 4
        self._rest = data[cut:]
        if not cut:
            return b""
        if self._padded:
            raise binascii.Error("Excess data after padding")
        self._padded = data[cut - 1 : cut] == b"="
        return binascii.a2b_base64(data[:cut], strict_mode=True)

    def finish(self) -> None:
        """Raise ValueError when the stream ended inside a group of 4."""
        if self._rest:
            raise ValueError("truncated base64: the last group of 4 characters is cut short")


async def read_multipart(
    request: web.Request,
    values: MultiDict[str],
    files: dict[str, bytes],
    stream: StreamTo[T] | None = None,
) -> T | None:
    """Add the parts of ``request``'s multipart body to ``values`` and ``files``.

    The part named ``stream.field`` goes to ``stream.sink`` instead; its result
    is returned (None when the body had no such part). Raises FormError; what
    the sink made is dropped then.
    """
    body = _Body(values, files, stream)
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            await body.take(part)
    except BaseException as exc:
        if stream is not None and body.streamed:
            await asyncio.shield(stream.drop(body.streamed[0]))
        if isinstance(exc, (ValueError, AssertionError)):
            raise FormError(WHOLE_BODY, f"Malformed multipart body: {exc}") from None
        raise
    return body.streamed[0] if body.streamed else None


@dataclass
class _Budget:
    """Bytes the in-memory fields of one body may still take."""

    left: int = MAX_FIELDS


class _Body(Generic[T]):
    """The parts of one body read so far."""

    def __init__(
        self, values: MultiDict[str], files: dict[str, bytes], stream: StreamTo[T] | None
    ) -> None:
        self.values, self.files, self.stream = values, files, stream
        self.budget = _Budget()
        self.streamed: list[T] = []  # the sink's result, once the streamed part was read

    async def take(self, part: object) -> None:
        """Read ``part`` into the values, the files or the stream's sink."""
        if not isinstance(part, BodyPartReader):
            raise FormError(WHOLE_BODY, "Malformed multipart body: nested multipart.")
        if not part.headers:
            await _small(part, WHOLE_BODY, self.budget)  # libmaas's empty body: one bare part
        elif not part.name:
            raise FormError(WHOLE_BODY, "Malformed multipart body: a part has no name.")
        elif self.stream is not None and part.name == self.stream.field:
            if self.streamed:
                raise FormError(part.name, "Send this field once.")
            self.streamed.append(await self.stream.sink(_decoded(part, part.name)))
        elif part.filename is not None:
            self.files[part.name] = await _small(part, part.name, self.budget)
        else:
            data = await _small(part, part.name, self.budget)
            self.values.add(part.name, _text(part.name, data))


def _is_base64(part: BodyPartReader, field: str) -> bool:
    encoding = part.headers.get("Content-Transfer-Encoding", "").strip().lower()
    if encoding not in _PLAIN_ENCODINGS and encoding != "base64":
        raise FormError(field, f"Unsupported Content-Transfer-Encoding {encoding!r}.")
    return encoding == "base64"


async def _decoded(part: BodyPartReader, field: str) -> AsyncIterator[bytes]:
    """The part's bytes, base64-decoded when it says so; big pieces decoded off the loop."""
    decoder = Base64Stream() if _is_base64(part, field) else None
    while chunk := await part.read_chunk(_READ_CHUNK):
        if decoder is None:
            yield chunk
            continue
        try:
            if len(chunk) < _DECODE_INLINE:
                data = decoder.feed(chunk)
            else:
                data = await asyncio.to_thread(decoder.feed, chunk)
        except ValueError as exc:
            raise FormError(field, f"Invalid base64: {exc}.") from None
        if data:
            yield data
    if decoder is not None:
        try:
            decoder.finish()
        except ValueError as exc:
            raise FormError(field, f"Invalid base64: {exc}.") from None


async def _small(part: BodyPartReader, field: str, budget: _Budget) -> bytes:
    """A part held in memory, within :data:`MAX_FIELD` and what is left of the budget."""
    data = bytearray()
    async for piece in _decoded(part, field):
        data += piece
        if len(data) > MAX_FIELD:
            raise FormError(field, f"This field is too large (at most {MAX_FIELD} bytes).")
        if len(data) > budget.left:
            raise FormError(
                WHOLE_BODY, f"The fields are too large (at most {MAX_FIELDS} bytes together)."
            )
    budget.left -= len(data)
    return bytes(data)


def _text(field: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError(field, "Not UTF-8 text.") from None
