"""The MAAS API 2.0 wire conventions, shared by every handler.

- Request parameters come from the query string and the body (urlencoded or
  multipart; multipart parts may be base64-encoded, as python-libmaas sends
  them); lists are repeated keys.
- ``op=`` selects a custom operation; an unknown method/op pair is a 400
  ``Unrecognised signature: method=<M> op=<op>``.
- Validation errors are 400 with ``{field: [messages]}`` (``__all__`` for
  errors not tied to a field); unknown ids are 404 ``No <Model> matches the
  given query.``; permission errors are 403 plain text.
- Responses are JSON with ``resource_uri`` on objects and MAAS's timestamp
  format; every response carries a Content-Type and ``X-MAAS-API-Hash``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from common.ops.logging import get_logger
from region.api.multipart import FormError, read_multipart

API_ROOT = "/MAAS/api/2.0"

log = get_logger("api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DISPATCH_TABLE = "_bootsync_dispatch_table"


class ValidationError(Exception):
    """A 400 answer: ``{field: [message, ...]}``."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items()))

    @classmethod
    def field(cls, name: str, message: str) -> ValidationError:
        """One message for one field (``__all__`` for the whole request)."""
        return cls({name: [message]})


@dataclass(frozen=True)
class Params:
    """Request parameters: query string first, then body; repeated keys are lists."""

    values: MultiDictProxy[str]
    files: Mapping[str, bytes]

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or None."""
        return self.values.get(name)

    def getall(self, name: str) -> list[str]:
        """Every value of ``name`` (``arches=a&arches=b``), empty if absent."""
        return list(self.values.getall(name, []))

    def __contains__(self, name: object) -> bool:
        return name in self.values or name in self.files

    def file_or_value(self, name: str) -> bytes | None:
        """A multipart file part, else a text value as UTF-8 bytes, else None."""
        if name in self.files:
            return self.files[name]
        value = self.values.get(name)
        return None if value is None else value.encode()


def maas_timestamp(value: datetime | str | None) -> str | None:
    """``2018-12-04T18:11:31.894``: MAAS's rendering (UTC, milliseconds, no zone)."""
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.isoformat(timespec="milliseconds")


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """A JSON answer, Content-Type exactly ``application/json``."""
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


def text_response(text: str, *, status: int = 200) -> web.Response:
    """A plain-text answer (MAAS answers ops like ``import`` this way)."""
    return web.Response(status=status, text=text, content_type="text/plain", charset="utf-8")


def no_content() -> web.Response:
    """204 for a delete; still with a Content-Type, which real clients expect."""
    return web.Response(status=204, content_type="text/plain", charset="utf-8")


def not_found(model: str) -> web.HTTPNotFound:
    """404 ``No <Model> matches the given query.``"""
    return web.HTTPNotFound(text=f"No {model} matches the given query.", content_type="text/plain")


MAX_ID = 2**63 - 1  # SQLite's largest integer: no row has a larger id


def path_id(request: web.Request, name: str, model: str) -> int:
    """The id in path parameter ``name``; 404 ``No <model> matches ...`` if no row can have it.

    The one place path ids are parsed: plain ASCII digits up to :data:`MAX_ID`
    (not ``+1``, ``1_0``, `` 1`` or other scripts' digits, which ``int()`` takes).
    """
    text = request.match_info[name]
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        raise not_found(model)
    number = int(text)
    if number > MAX_ID:
        raise not_found(model)
    return number


def forbidden(message: str = "User is not allowed access to this API.") -> web.HTTPForbidden:
    """403 with MAAS's plain-text message."""
    return web.HTTPForbidden(text=message, content_type="text/plain")


async def read_params(request: web.Request) -> Params:
    """Query-string and body parameters of ``request``.

    A multipart body is read by :func:`region.api.multipart.read_multipart`
    (its base64 and size rules); raises ValidationError naming the field for
    a body it refuses.
    """
    values: MultiDict[str] = MultiDict(request.query)
    files: dict[str, bytes] = {}
    ctype = request.content_type
    if request.body_exists and ctype == "application/x-www-form-urlencoded":
        for key, value in (await request.post()).items():
            values.add(key, value if isinstance(value, str) else "")
    elif request.body_exists and ctype.startswith("multipart/"):
        try:
            await read_multipart(request, values, files)
        except FormError as exc:
            raise ValidationError.field(exc.field, exc.reason) from None
    return Params(values=MultiDictProxy(values), files=files)


def dispatch(routes: Mapping[tuple[str, str | None], Handler]) -> Handler:
    """One aiohttp handler that picks the operation by method and ``op``.

    ``routes`` maps (HTTP method, op or None) to a coroutine. ``op`` is read from
    the query string first, then from an urlencoded body.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        op = request.query.get("op")
        if (
            op is None
            and request.method == "POST"
            and request.content_type == "application/x-www-form-urlencoded"
        ):
            op = (await request.post()).get("op")  # type: ignore[assignment]
        handler = routes.get((request.method, op or None))
        if handler is None:
            raise web.HTTPBadRequest(
                text=f"Unrecognised signature: method={request.method} op={op}",
                content_type="text/plain",
            )
        return await handler(request)

    setattr(handle, _DISPATCH_TABLE, dict(routes))
    return handle


def dispatch_table(handler: object) -> Mapping[tuple[str, str | None], Handler] | None:
    """The (method, op) table of a handler made by :func:`dispatch`; None for others."""
    table: Mapping[tuple[str, str | None], Handler] | None = getattr(handler, _DISPATCH_TABLE, None)
    return table


@web.middleware
async def maas_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ValidationError into 400 JSON; never answer a bare 500 without a log event."""
    try:
        return await handler(request)
    except ValidationError as exc:
        log.info("api_request_invalid", method=request.method, path=request.path, errors=exc.errors)
        return json_response(exc.errors, status=400)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("api_request_failed", method=request.method, path=request.path)
        return text_response("Internal server error.", status=500)


def api_hash_middleware(api_hash: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Add ``X-MAAS-API-Hash`` to every response (errors included)."""

    @web.middleware
    async def add_hash(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers["X-MAAS-API-Hash"] = api_hash
            raise
        response.headers["X-MAAS-API-Hash"] = api_hash
        return response

    return add_hash
