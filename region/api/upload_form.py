"""The body of ``POST boot-resources/``: small fields in memory, ``content`` to disk.

A multipart body is read by the API's one multipart reader
(:func:`region.api.multipart.read_multipart`, its base64 and size rules), with
``content`` streamed into the upload area: an image sent in one request is
decoded, hashed and written as it arrives, never held whole. Other bodies go
through ``read_params``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from region.api.http import Params, ValidationError, read_params
from region.api.multipart import FormError, StreamTo, read_multipart
from region.images.upload_area import Staged, UploadArea

CONTENT = "content"


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
    try:
        staged = await read_multipart(
            request, values, files, StreamTo(CONTENT, area.stage, area.drop_staged)
        )
    except FormError as exc:
        raise ValidationError.field(exc.field, exc.reason) from None
    return Params(values=MultiDictProxy(values), files=files), staged
