"""``GET /MAAS/api/2.0/describe/`` and ``version/``: anonymous, as MAAS serves them.

describe/ renders the handlers the app routes (region/api/handlers.py, stored
under :data:`API_HANDLERS` by :func:`add_describe`) with ``uri``\\ s built from
the request's scheme and Host, and ``hash`` equal to the ``X-MAAS-API-Hash``
header (stored under :data:`API_HASH`). Content-Type is exactly
``application/json``: the maas CLI compares it literally.

version/ answers MAAS's ``{version, subversion, capabilities}``. The version is
a plain ``X.Y.Z`` because python-libmaas parses it with ``StrictVersion``; the
capabilities are MAAS 3.4's, ``authenticate-api`` included (clients exchange a
username and password for an API key at ``/MAAS/accounts/authenticate/``).
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from common.version import VERSION as BOOTSYNC_VERSION
from region.api.http import json_response
from region.api.registry import DESCRIBE_PATH, Action, HandlerSpec, api_hash, describe_document

API_HASH = web.AppKey("api_hash", str)
API_HANDLERS = web.AppKey[tuple[HandlerSpec, ...]]("api_handlers")
# MAAS 3.4's API_CAPABILITIES_LIST, in its order. ``authenticate-api`` is served by
# region/ui/accounts.py (``POST /MAAS/accounts/authenticate/``: a password gets an API key).
CAPABILITIES = (
    "networks-management",
    "static-ipaddresses",
    "ipv6-deployment-ubuntu",
    "devices-management",
    "storage-deployment-ubuntu",
    "network-deployment-ubuntu",
    "bridging-interface-ubuntu",
    "bridging-automatic-ubuntu",
    "authenticate-api",
)
VERSION = {
    "version": "3.4.0",
    "subversion": f"bootsync {BOOTSYNC_VERSION}",
    "capabilities": list(CAPABILITIES),
}


async def describe(request: web.Request) -> web.StreamResponse:
    """GET describe/: the routed handlers' document as seen from this request's host."""
    base_url = f"{request.scheme}://{request.host}"
    specs = request.app[API_HANDLERS]
    return json_response(describe_document(specs, base_url, request.app[API_HASH]))


async def version(request: web.Request) -> web.StreamResponse:
    """GET version/: the version triple MAAS clients read."""
    return json_response(VERSION)


VERSION_HANDLER = HandlerSpec(
    "VersionHandler",
    "version/",
    "Information about this server.",
    (Action("GET", None, version, "Read the version and capabilities of the server."),),
    anon=True,
)
HANDLERS = (VERSION_HANDLER,)


def add_describe(app: web.Application, specs: Iterable[HandlerSpec]) -> None:
    """Serve describe/ over ``specs``; store them and their hash (:data:`API_HASH`) on ``app``."""
    app[API_HANDLERS] = declared = tuple(specs)
    app[API_HASH] = api_hash(declared)
    app.router.add_get(DESCRIBE_PATH, describe, allow_head=False)
