"""``/MAAS/api/2.0/boot-resources/``: the images the region holds, and the import ops.

Reading needs any valid key; deleting and the ``import``/``stop_import`` ops
need an admin. Shapes follow MAAS 3.4, with two fixes: per-file ``progress``
is bytes held / size × 100 (MAAS inverted it), and deleting an unknown id is a
404 (MAAS answered 500). Our addition: a ``status`` per image (region/images/status.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from common.errors import BootsyncError
from common.ops.logging import get_logger
from region.api.auth import require_admin, require_user
from region.api.http import (
    API_ROOT,
    json_response,
    no_content,
    not_found,
    path_id,
    read_params,
    text_response,
)
from region.api.registry import Action, HandlerSpec, Param
from region.cluster.holdings import regions_lacking
from region.context import CTX, RegionContext
from region.db import resources as repo_resources
from region.db import uploads as repo_uploads
from region.db.resources import ListRow, ResourceRow, SetRow, SetTotals
from region.images.status import QUEUED, SYNCED, SYNCING_REGIONS, image_status, progress
from region.rackhub.state import RackSyncSummary, rack_sync_summary

log = get_logger("api.boot_resources")

TYPES = {
    "synced": repo_resources.SYNCED,
    "generated": repo_resources.GENERATED,
    "uploaded": repo_resources.UPLOADED,
}
TYPE_NAMES = {
    repo_resources.SYNCED: "Synced",
    repo_resources.GENERATED: "Generated",
    repo_resources.UPLOADED: "Uploaded",
}
# ``extra`` keys MAAS merges into a resource object (the rest stay region-side).
_API_EXTRAS = ("subarches", "title", "platform", "supported_platforms")
IMPORT_STARTED = "Import of boot resources started"
IMPORT_STOPPING = "Import of boot resources is being stopped"
_TRUE = frozenset({"true", "True", "1", "yes", "on"})
_RESOURCES_URI = f"{API_ROOT}/boot-resources/"


def upload_uri(resource_id: int, file_id: int) -> str:
    """The path chunks of file ``file_id`` are PUT to."""
    return f"{API_ROOT}/boot-resources/{resource_id}/upload/{file_id}/"


def resource_uri(resource_id: int) -> str:
    """The API path of one boot resource."""
    return f"{_RESOURCES_URI}{resource_id}/"


def render_resource(
    resource: ResourceRow,
    newest: SetTotals | None,
    racks: RackSyncSummary | None = None,
    lacking: Sequence[str] = (),
) -> dict[str, Any]:
    """A list entry: MAAS's fields, ``extra`` merged in, plus our ``status``.

    A complete image's status also says where it stands on the racks (``racks``)
    and, first, on the regions: ``lacking`` names the live regions whose stores do
    not hold it yet (``Syncing to region controller(s)``, names in ``syncing_regions``).
    """
    row = ListRow(
        resource.id,
        resource.rtype,
        resource.name,
        resource.architecture,
        resource.base_image,
        resource.extra,
        newest,
    )
    return _entry(row, None if racks is None else racks.image_status, lacking)


def render_list(
    rows: Sequence[ListRow],
    racks: RackSyncSummary | None,
    lacking: Mapping[int, Sequence[str]],
) -> list[dict[str, Any]]:
    """The list's entries, each the one :func:`render_resource` gives for its resource.

    The rack part of a status is computed once per (name, base arch), not per entry.
    """
    rack_status = None if racks is None else _memo(racks.image_status)
    return [_entry(row, rack_status, lacking.get(row.id, ())) for row in rows]


def _memo(status: Callable[[str, str], str]) -> Callable[[str, str], str]:
    seen: dict[tuple[str, str], str] = {}

    def cached(name: str, arch: str) -> str:
        key = (name, arch)
        found = seen.get(key)
        if found is None:
            found = seen[key] = status(name, arch)
        return found

    return cached


def _entry(
    row: ListRow, rack_status: Callable[[str, str], str] | None, lacking: Sequence[str]
) -> dict[str, Any]:
    resource_id, rtype, name, architecture, base_image, extra, newest = row
    data: dict[str, Any] = {
        "id": resource_id,
        "type": TYPE_NAMES.get(rtype, "Unknown"),
        "name": name,
        "architecture": architecture,
        "resource_uri": f"{_RESOURCES_URI}{resource_id}/",
        "last_deployed": None,
    }
    if extra:
        for key in _API_EXTRAS:
            if key in extra:
                data[key] = extra[key]
    if base_image:
        data["base_image"] = base_image
    if newest is None:
        status = QUEUED
    else:
        status = image_status(
            has_set=True, complete=newest.complete, done=newest.done, total=newest.total
        )
    if status == SYNCED and lacking:
        status = SYNCING_REGIONS
        data["syncing_regions"] = list(lacking)
    elif status == SYNCED and rack_status is not None:
        status = rack_status(name, architecture.partition("/")[0])
    data["status"] = status
    return data


async def rack_summary(request: web.Request) -> RackSyncSummary:
    """Where the region's current images stand on the connected racks."""
    ctx = request.app[CTX]
    connected = ctx.racks.connected_ids() if ctx.racks is not None else frozenset()
    return await rack_sync_summary(ctx.db, await ctx.publisher.current_id(), connected=connected)


async def regions_syncing(ctx: RegionContext) -> Mapping[int, list[str]]:
    """Resource id → the live regions still lacking its newest complete set (none alone).

    A region alone in its cluster has nobody to sync with: nothing is listed then.
    """
    cluster = ctx.cluster
    if cluster is None:
        return {}
    live = {r.id: r.name for r in await cluster.live_regions()}
    if not live.keys() - {cluster.region_id}:
        return {}
    return await regions_lacking(ctx.db, live)


def render_set(
    set_row: SetRow,
    upload_uris: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A set with its files; ``progress`` only while incomplete, as MAAS does.

    ``upload_uris`` (filename → path) adds ``upload_uri`` to incomplete uploaded files.
    """
    files: dict[str, Any] = {}
    for f in set_row.files:
        entry: dict[str, Any] = {
            "filename": f.filename,
            "filetype": f.filetype,
            "sha256": f.sha256,
            "size": f.size,
            "complete": f.bytes_done >= f.size,
        }
        if not entry["complete"]:
            entry["progress"] = progress(f.bytes_done, f.size)
            if upload_uris and f.filename in upload_uris:
                entry["upload_uri"] = upload_uris[f.filename]
        files[f.filename] = entry
    data: dict[str, Any] = {
        "version": set_row.version,
        "label": set_row.label,
        "size": set_row.total,
        "complete": set_row.complete,
    }
    if not set_row.complete:
        data["progress"] = progress(set_row.done, set_row.total)
    data["files"] = files
    return data


def _resource_id(request: web.Request) -> int:
    return path_id(request, "id", "BootResource")


async def read_resources(request: web.Request) -> web.StreamResponse:
    """GET: every resource, or those of ``type`` (synced, generated, uploaded, all)."""
    require_user(request)
    rtype = request.query.get("type", "all")
    if rtype != "all" and rtype not in TYPES:
        raise web.HTTPBadRequest(
            text=f"'{rtype}' is not a valid boot resource type. Available types: {list(TYPES)}",
            content_type="text/plain",
        )
    rows = await repo_resources.list_rows(request.app[CTX].db, TYPES.get(rtype))
    racks = await rack_summary(request)
    syncing = await regions_syncing(request.app[CTX])
    return json_response(render_list(rows, racks, syncing))


async def resource_detail(request: web.Request, resource_id: int) -> dict[str, Any] | None:
    """One resource with its sets, newest first (``upload_uri`` on files being uploaded)."""
    db = request.app[CTX].db
    found = await repo_resources.get_resource(db, resource_id)
    if found is None:
        return None
    resource, sets = found
    newest = sets[0] if sets else None
    data = render_resource(
        resource,
        None
        if newest is None
        else SetTotals(
            files=len(newest.files), total=newest.total, done=newest.done, complete=newest.complete
        ),
        await rack_summary(request),
        (await regions_syncing(request.app[CTX])).get(resource.id, ()),
    )
    incomplete = (
        {}
        if resource.rtype == repo_resources.SYNCED
        else await repo_uploads.incomplete_files(db, resource.id)
    )
    uris = {
        set_id: {name: upload_uri(resource.id, file_id) for name, file_id in files.items()}
        for set_id, files in incomplete.items()
    }
    data["sets"] = {s.version: render_set(s, uris.get(s.id)) for s in sets}
    return data


async def read_resource(request: web.Request) -> web.StreamResponse:
    """GET {id}: one resource with its sets, newest first."""
    require_user(request)
    data = await resource_detail(request, _resource_id(request))
    if data is None:
        raise not_found("BootResource")
    return json_response(data)


async def delete_resource(request: web.Request) -> web.StreamResponse:
    """DELETE {id}: the resource, its sets and files (204); the stream is republished."""
    user = require_admin(request, method_only=True)
    ctx = request.app[CTX]
    resource_id = _resource_id(request)
    if not await repo_resources.delete_resource(ctx.db, resource_id):
        raise not_found("BootResource")
    log.info("boot_resource_deleted", user=user.username, boot_resource_id=resource_id)
    try:
        await ctx.importer.republish(reason="boot_resource_deleted")
    except BootsyncError as exc:  # deleted all the same; the next import publishes
        log.warning("stream_republish_failed", error=str(exc))
    return no_content()


async def start_import(request: web.Request) -> web.StreamResponse:
    """POST op=import: start an import in the background (a running one is kept).

    Our addition: ``force=true`` accepts an index older than the last one
    imported (the rollback guard refuses it otherwise).
    """
    user = require_admin(request, method_only=True)
    force = (await read_params(request)).get("force") in _TRUE
    importer = request.app[CTX].importer
    reason = f"api:{user.username}"
    started = importer.start(reason=reason, force=force)
    log.info("import_requested", user=user.username, started=started, force=force)
    return text_response(IMPORT_STARTED)


async def stop_import(request: web.Request) -> web.StreamResponse:
    """POST op=stop_import: cancel the running import (answers once it has stopped)."""
    user = require_admin(request, method_only=True)
    log.info("import_stop_requested_by", user=user.username)
    await request.app[CTX].importer.stop()
    return text_response(IMPORT_STOPPING)


async def is_importing(request: web.Request) -> web.StreamResponse:
    """GET op=is_importing: JSON ``true`` while the region imports."""
    require_user(request)
    return json_response(request.app[CTX].importer.is_importing())


# The upload (POST, region/api/uploads.py's CREATE_RESOURCE) joins these actions in
# region/api/handlers.py: uploads imports this module, so it cannot be listed here.
BOOT_RESOURCES = HandlerSpec(
    "BootResourcesHandler",
    "boot-resources/",
    "Manage the boot resources.",
    (
        Action(
            "GET",
            None,
            read_resources,
            "List boot resources.",
            (Param("type", "synced, generated, uploaded or all (default)."),),
        ),
        Action(
            "POST",
            "import",
            start_import,
            "Import the boot resources.",
            (
                Param(
                    "force",
                    "true accepts an upstream index older than the last one imported (bootsync).",
                    type="Boolean",
                ),
            ),
            details="The import runs in the background.",
        ),
        Action(
            "GET",
            "is_importing",
            is_importing,
            "Tell whether the region is importing boot resources.",
        ),
        Action("POST", "stop_import", stop_import, "Stop importing boot resources."),
    ),
)
BOOT_RESOURCE = HandlerSpec(
    "BootResourceHandler",
    "boot-resources/{id}/",
    "Manage a boot resource.",
    (
        Action(
            "GET",
            None,
            read_resource,
            "Read a boot resource.",
            details="The resource with its sets and files.",
        ),
        Action("DELETE", None, delete_resource, "Delete a boot resource."),
    ),
)
HANDLERS = (BOOT_RESOURCES, BOOT_RESOURCE)
