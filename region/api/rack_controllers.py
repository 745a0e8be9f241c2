"""``/MAAS/api/2.0/rackcontrollers/``: MAAS's rack-controller image calls, same paths and ops.

Reading racks needs any valid key; ``import_boot_images`` and
``list_boot_images`` are admin-only (403 ``This method is reserved for admin
users.``). Rack objects carry MAAS's rack-controller fields with what the rack
reported of its host (region/api/rack_fields.py), ``last_image_sync``, and,
under ``bootsync``, what this region knows about the rack's sync (connected,
state, snapshot, error).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common.ops.logging import get_logger
from region.api.auth import require_admin, require_user
from region.api.http import (
    API_ROOT,
    json_response,
    maas_timestamp,
    not_found,
    text_response,
)
from region.api.rack_fields import node_fields
from region.api.registry import Action, HandlerSpec
from region.context import CTX, RegionContext
from region.db.racks import RackRow, get_rack, list_racks
from region.rackhub.state import rack_status

log = get_logger("api.rack_controllers")

RACK_MODEL = "RackController"
IMPORT_ALL = "Import of boot images started on all rack controllers"


def resource_uri(system_id: str) -> str:
    """The API path of one rack controller."""
    return f"{API_ROOT}/rackcontrollers/{system_id}/"


def _connected(ctx: RegionContext, system_id: str) -> bool:
    return ctx.racks is not None and ctx.racks.is_connected(system_id)


def render_rack(rack: RackRow, *, connected: bool) -> dict[str, Any]:
    """A rack-controller object: MAAS's fields (region/api/rack_fields.py) plus ``bootsync``."""
    return {
        **node_fields(rack, connected=connected),
        "resource_uri": resource_uri(rack.system_id),
        "last_image_sync": maas_timestamp(rack.last_sync),
        "bootsync": {
            "url": rack.url,
            "connected": connected,
            "state": rack.state,
            "snapshot_id": rack.snapshot_id,
            "error": rack.error,
            "registered": maas_timestamp(rack.registered),
            "last_seen": maas_timestamp(rack.last_seen),
        },
    }


async def _rack_or_404(request: web.Request) -> RackRow:
    rack = await get_rack(request.app[CTX].db, request.match_info["system_id"])
    if rack is None:
        raise not_found(RACK_MODEL)
    return rack


async def read_racks(request: web.Request) -> web.StreamResponse:
    """GET: every registered rack controller."""
    require_user(request)
    ctx = request.app[CTX]
    return json_response(
        [render_rack(r, connected=_connected(ctx, r.system_id)) for r in await list_racks(ctx.db)]
    )


async def read_rack(request: web.Request) -> web.StreamResponse:
    """GET {system_id}: one rack controller."""
    require_user(request)
    rack = await _rack_or_404(request)
    return json_response(render_rack(rack, connected=_connected(request.app[CTX], rack.system_id)))


async def import_all(request: web.Request) -> web.StreamResponse:
    """POST op=import_boot_images: every connected rack syncs now."""
    user = require_admin(request, method_only=True)
    hub = request.app[CTX].racks
    reached = hub.request_import() if hub is not None else 0
    log.info("rack_import_requested", user=user.username, system_id=None, racks=reached)
    return text_response(IMPORT_ALL)


async def import_one(request: web.Request) -> web.StreamResponse:
    """POST {system_id} op=import_boot_images: that rack syncs now (if connected)."""
    user = require_admin(request, method_only=True)
    rack = await _rack_or_404(request)
    hub = request.app[CTX].racks
    reached = hub.request_import(rack.system_id) if hub is not None else 0
    log.info("rack_import_requested", user=user.username, system_id=rack.system_id, racks=reached)
    return text_response(f"Import of boot images started on {rack.hostname}")


async def list_boot_images(request: web.Request) -> web.StreamResponse:
    """GET {system_id} op=list_boot_images: ``{images, connected, status}``, as MAAS answers."""
    require_admin(request, method_only=True)
    rack = await _rack_or_404(request)
    ctx = request.app[CTX]
    connected = _connected(ctx, rack.system_id)
    status = rack_status(
        rack,
        connected=connected,
        current_snapshot_id=await ctx.publisher.current_id(),
        region_importing=ctx.importer.is_importing(),
    )
    images = (
        []
        if status == "unknown"
        else [
            {"name": i.name, "architecture": i.architecture, "subarches": list(i.subarches)}
            for i in rack.images
        ]
    )
    return json_response({"images": images, "connected": connected, "status": status})


RACK_CONTROLLERS = HandlerSpec(
    "RackControllersHandler",
    "rackcontrollers/",
    "Manage the collection of rack controllers.",
    (
        Action("GET", None, read_racks, "List rack controllers."),
        Action(
            "POST",
            "import_boot_images",
            import_all,
            "Import the boot images on all rack controllers.",
        ),
    ),
)
RACK_CONTROLLER = HandlerSpec(
    "RackControllerHandler",
    "rackcontrollers/{system_id}/",
    "Manage a rack controller.",
    (
        Action("GET", None, read_rack, "Read a rack controller."),
        Action(
            "GET",
            "list_boot_images",
            list_boot_images,
            "List the boot images on a rack controller.",
        ),
        Action(
            "POST",
            "import_boot_images",
            import_one,
            "Import the boot images on a rack controller.",
        ),
    ),
)
HANDLERS = (RACK_CONTROLLERS, RACK_CONTROLLER)
