"""``GET /MAAS/api/2.0/boot-sources/{id}/?op=available_images`` (our addition).

What a source offers (its catalogue) and what the region last learnt about
it: the last error reaching or verifying it, warnings (frozen mirror,
unsigned index), and the index's own ``updated``. Admin-only, like the rest of
``boot-sources``. :data:`AVAILABLE_IMAGES` declares the op; region/api/boot_sources.py
puts it among the actions of ``BootSourceHandler``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from region.api.auth import require_admin
from region.api.http import API_ROOT, json_response, maas_timestamp, not_found, path_id
from region.api.registry import Action
from region.context import CTX
from region.db import catalogue as repo_catalogue
from region.db import sources as repo_sources


async def available_images(request: web.Request) -> web.StreamResponse:
    """The catalogue and status of source ``{id}``; 404 for an unknown source."""
    require_admin(request)
    ctx = request.app[CTX]
    source = await repo_sources.get_source(ctx.db, path_id(request, "id", "BootSource"))
    if source is None:
        raise not_found("BootSource")
    status = await repo_catalogue.get_status(ctx.db, source.id)
    images = [asdict(entry) for entry in await repo_catalogue.available(ctx.db, source.id)]
    body: dict[str, Any] = {
        "boot_source_id": source.id,
        "url": source.url,
        "last_error": status.last_error,
        "last_error_at": maas_timestamp(status.last_error_at),
        "warnings": list(status.warnings),
        "index_updated": status.last_index_updated,
        "index_changed_at": maas_timestamp(status.index_changed_at),
        "last_checked_at": maas_timestamp(status.last_checked_at),
        "images": images,
        "resource_uri": f"{API_ROOT}/boot-sources/{source.id}/",
    }
    return json_response(body)


AVAILABLE_IMAGES = Action(
    "GET",
    "available_images",
    available_images,
    "List what a boot source offers (bootsync).",
    details="Its catalogue, and the last error or warnings reading it.",
)
