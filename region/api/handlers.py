"""Every MAAS handler this region serves; the routes and describe/ both come from here.

Each API module declares its handlers next to its handler code (a
:class:`~region.api.registry.HandlerSpec` per path, an
:class:`~region.api.registry.Action` per method and op, naming the coroutine,
its doc and every request parameter it reads). :data:`HANDLERS` gathers them;
:func:`add_routes` routes them and serves describe/ and the API hash over the
same list, so the two cannot disagree. To add an action, declare it in its
module; a new handler also needs its spec listed here.

Handler names are MAAS's class names: clients derive commands (maas CLI) and
attributes (python-libmaas) from them.
"""

from __future__ import annotations

from aiohttp import web

from region.api import (
    boot_resources,
    boot_sources,
    describe,
    maas_config,
    rack_controllers,
    selections,
    uploads,
    users,
)
from region.api.registry import HandlerSpec
from region.api.registry import add_routes as route_handlers

HANDLERS: tuple[HandlerSpec, ...] = (
    *boot_sources.HANDLERS,
    *selections.HANDLERS,
    # uploads.py answers POST boot-resources/ but imports boot_resources.py.
    boot_resources.BOOT_RESOURCES.with_actions(uploads.CREATE_RESOURCE),
    boot_resources.BOOT_RESOURCE,
    *uploads.HANDLERS,
    *maas_config.HANDLERS,
    *users.HANDLERS,
    *rack_controllers.HANDLERS,
    *describe.HANDLERS,
)


def add_routes(app: web.Application) -> None:
    """Route :data:`HANDLERS`, serve describe/ over them and store their hash (API_HASH)."""
    route_handlers(app, HANDLERS)
    describe.add_describe(app, HANDLERS)
