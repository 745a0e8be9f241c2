"""``GET /MAAS/api/2.0/describe/`` and ``version/``: anonymous, as MAAS serves them.

describe/ renders region/api/handlers.py's registry (region/api/registry.py)
with ``uri``s built from the request's scheme and Host, and ``hash`` equal to
the ``X-MAAS-API-Hash`` header (region/app.py stores it under :data:`API_HASH`).
Content-Type is exactly ``application/json``: the maas CLI compares it literally.

version/ answers MAAS's ``{version, subversion, capabilities}``. The version is
a plain ``X.Y.Z`` because python-libmaas parses it with ``StrictVersion``;
``authenticate-api`` is not a capability: this region takes API keys only.
"""

from __future__ import annotations

from aiohttp import web

from region.api.handlers import HANDLERS
from region.api.http import API_ROOT, dispatch, json_response
from region.api.registry import DESCRIBE_PATH, describe_document

API_HASH = web.AppKey("api_hash", str)
VERSION = {"version": "3.4.0", "subversion": "bootsync 0.1.0", "capabilities": []}


async def describe(request: web.Request) -> web.StreamResponse:
    """GET describe/: the registry's document as seen from this request's host."""
    base_url = f"{request.scheme}://{request.host}"
    return json_response(describe_document(HANDLERS, base_url, request.app.get(API_HASH, "")))


async def version(request: web.Request) -> web.StreamResponse:
    """GET version/: the version triple MAAS clients read."""
    return json_response(VERSION)


def add_routes(app: web.Application) -> None:
    """Register ``describe/`` and ``version/``."""
    app.router.add_get(DESCRIBE_PATH, describe, allow_head=False)
    app.router.add_route("*", f"{API_ROOT}/version/", dispatch({("GET", None): version}))
