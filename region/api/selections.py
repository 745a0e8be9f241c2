"""``/MAAS/api/2.0/boot-sources/{boot_source_id}/selections/``: what to import from a source.

Admin-only as a whole, as in MAAS. Create answers 200 (MAAS does), update is
partial, delete answers 204. One selection per os+release in a source. Once the
source's catalogue is known, os/release and every arch, subarch and label must be
offered by it (``*`` matches anything); before that, selections are accepted as
they are, so an offline region can be configured. The selection of the
commissioning release (``commissioning_osystem``/``commissioning_distro_series``)
cannot be deleted, as in MAAS 3.4 (400 ``Unable to delete ...``).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from common.ops.logging import get_logger
from region.api.auth import require_admin
from region.api.boot_sources import source_or_404
from region.api.http import (
    API_ROOT,
    Params,
    ValidationError,
    json_response,
    no_content,
    not_found,
    path_id,
    read_params,
    text_response,
)
from region.api.registry import Action, HandlerSpec, Param
from region.context import CTX
from region.db import catalogue as repo_catalogue
from region.db import config as repo_config
from region.db import sources as repo_sources
from region.db.connection import Database
from region.db.sources import DuplicateError, Selection

log = get_logger("api.selections")

MAX_NAME_LENGTH = 20
MAX_ITEM_LENGTH = 64
LIST_FIELDS = ("arches", "subarches", "labels")
DUPLICATE = "Boot source selection with this Boot source, Os and Release already exists."
COMMISSIONING_REFUSED = (
    "Unable to delete {os} {release}. It is the operating system used in ephemeral environments."
)
_NAME = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9._+-]*")
_NAME_RULE = "use letters, digits, '.', '_', '+' and '-', or '*'"


def render_selection(sel: Selection) -> dict[str, Any]:
    """The JSON object MAAS gives for a selection (with ``boot_source_id``, which libmaas needs)."""
    return {
        "os": sel.os,
        "release": sel.release,
        "arches": list(sel.arches),
        "subarches": list(sel.subarches),
        "labels": list(sel.labels),
        "id": sel.id,
        "boot_source_id": sel.boot_source_id,
        "resource_uri": f"{API_ROOT}/boot-sources/{sel.boot_source_id}/selections/{sel.id}/",
    }


def _name(
    params: Params, field: str, errors: dict[str, list[str]], *, required: bool
) -> str | None:
    value = params.get(field)
    if value is None or value == "":
        if required or value == "":
            errors[field] = ["This field is required."]
        return None
    if len(value) > MAX_NAME_LENGTH:
        errors[field] = [
            f"Ensure this value has at most {MAX_NAME_LENGTH} characters (it has {len(value)})."
        ]
    elif not _NAME.fullmatch(value):
        errors[field] = [f"Enter a valid value: {_NAME_RULE}."]
    return value


def _names(params: Params, field: str, errors: dict[str, list[str]]) -> list[str] | None:
    """A repeated list parameter (empty values dropped); None when not sent at all."""
    if field not in params:
        return None
    values = list(dict.fromkeys(v for v in params.getall(field) if v != ""))
    bad = [v for v in values if len(v) > MAX_ITEM_LENGTH or not _NAME.fullmatch(v)]
    if bad:
        errors[field] = [f"Not a valid name: {bad[0]!r}; {_NAME_RULE}."]
    return values


async def _check_catalogue(
    conn: Database, source_id: int, fields: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    """MAAS's cache validation, run only once the source's catalogue is known."""
    if not await repo_catalogue.has_catalogue(conn, source_id):
        return
    os, release = fields["os"], fields["release"]
    offered = [
        e
        for e in await repo_catalogue.available(conn, source_id)
        if os in ("*", e.os) and release in ("*", e.release)
    ]
    if not offered:
        errors["os"] = [f"OS {os} with release {release} has no available images for download"]
        return
    for field, attr in (("arches", "arch"), ("subarches", "subarch"), ("labels", "label")):
        wanted = fields[field]
        if "*" not in wanted and not set(wanted) <= {getattr(e, attr) for e in offered}:
            errors[field] = [f"No available images to download for {list(wanted)!r}"]


async def _validate(
    conn: Database, source_id: int, params: Params, current: Selection | None
) -> dict[str, Any]:
    """The changes asked for; ValidationError listing every problem."""
    errors: dict[str, list[str]] = {}
    changes: dict[str, Any] = {
        "os": _name(params, "os", errors, required=current is None),
        "release": _name(params, "release", errors, required=current is None),
    }
    for field in LIST_FIELDS:
        changes[field] = _names(params, field, errors)
    changes = {name: value for name, value in changes.items() if value is not None}
    if errors:
        raise ValidationError(errors)
    merged: dict[str, Any] = {
        "os": current.os if current else "",
        "release": current.release if current else "",
        **{field: list(getattr(current, field)) if current else [] for field in LIST_FIELDS},
        **changes,
    }
    await _check_catalogue(conn, source_id, merged, errors)
    if (
        current is None or (merged["os"], merged["release"]) != (current.os, current.release)
    ) and any(
        (s.os, s.release) == (merged["os"], merged["release"])
        for s in await repo_sources.list_selections(conn, source_id)
    ):
        errors["__all__"] = [DUPLICATE]
    if errors:
        raise ValidationError(errors)
    return changes


async def validate_selection(
    conn: Database, source_id: int, params: Params, current: Selection | None
) -> dict[str, Any]:
    """The API's checks of a created (``current`` None) or changed selection; shared with the UI."""
    return await _validate(conn, source_id, params, current)


async def _selection_or_404(request: web.Request, source_id: int) -> Selection:
    sel = await repo_sources.get_selection(
        request.app[CTX].db, source_id, path_id(request, "id", "BootSourceSelection")
    )
    if sel is None:
        raise not_found("BootSourceSelection")
    return sel


async def read_selections(request: web.Request) -> web.StreamResponse:
    """GET: the selections of one source."""
    require_admin(request)
    source = await source_or_404(request, "boot_source_id")
    selections = await repo_sources.list_selections(request.app[CTX].db, source.id)
    return json_response([render_selection(sel) for sel in selections])


async def create_selection(request: web.Request) -> web.StreamResponse:
    """POST: a new selection (200, as MAAS answers)."""
    user = require_admin(request)
    db = request.app[CTX].db
    source = await source_or_404(request, "boot_source_id")
    changes = await _validate(db, source.id, await read_params(request), None)
    try:
        sel = await repo_sources.create_selection(db, source.id, **changes)
    except DuplicateError:
        raise ValidationError.field("__all__", DUPLICATE) from None
    log.info(
        "selection_created",
        user=user.username,
        boot_source_id=source.id,
        selection_id=sel.id,
        os=sel.os,
        release=sel.release,
    )
    return json_response(render_selection(sel))


async def read_selection(request: web.Request) -> web.StreamResponse:
    """GET: one selection."""
    require_admin(request)
    source = await source_or_404(request, "boot_source_id")
    return json_response(render_selection(await _selection_or_404(request, source.id)))


async def update_selection(request: web.Request) -> web.StreamResponse:
    """PUT: change the fields given, keep the others."""
    user = require_admin(request)
    db = request.app[CTX].db
    source = await source_or_404(request, "boot_source_id")
    current = await _selection_or_404(request, source.id)
    changes = await _validate(db, source.id, await read_params(request), current)
    try:
        sel = await repo_sources.update_selection(db, source.id, current.id, **changes)
    except DuplicateError:
        raise ValidationError.field("__all__", DUPLICATE) from None
    if sel is None:
        raise not_found("BootSourceSelection")
    log.info(
        "selection_updated",
        user=user.username,
        boot_source_id=source.id,
        selection_id=sel.id,
        fields=sorted(changes),
    )
    return json_response(render_selection(sel))


async def commissioning_refusal(db: Database, sel: Selection) -> str | None:
    """MAAS 3.4's refusal to delete the selection of the commissioning release, or None.

    MAAS's message leaves its two ``%s`` unfilled; here they name the OS and release.
    """
    osystem = await repo_config.get_config(db, "commissioning_osystem")
    series = await repo_config.get_config(db, "commissioning_distro_series")
    if (sel.os, sel.release) != (osystem, series):
        return None
    return COMMISSIONING_REFUSED.format(os=sel.os, release=sel.release)


async def delete_selection(request: web.Request) -> web.StreamResponse:
    """DELETE: one selection (204); its images go at the next import.

    The commissioning release's selection is refused (400, MAAS's plain text).
    """
    user = require_admin(request)
    source = await source_or_404(request, "boot_source_id")
    sel = await _selection_or_404(request, source.id)
    refusal = await commissioning_refusal(request.app[CTX].db, sel)
    if refusal is not None:
        log.info(
            "selection_delete_refused",
            user=user.username,
            boot_source_id=source.id,
            selection_id=sel.id,
            os=sel.os,
            release=sel.release,
            reason="commissioning release",
        )
        return text_response(refusal, status=400)
    if not await repo_sources.delete_selection(request.app[CTX].db, source.id, sel.id):
        raise not_found("BootSourceSelection")
    log.info(
        "selection_deleted",
        user=user.username,
        boot_source_id=source.id,
        selection_id=sel.id,
        os=sel.os,
        release=sel.release,
    )
    return no_content()


_SELECTION = (
    Param(
        "arches",
        "An architecture to import (amd64, arm64, ...); repeat for several, '*' for all.",
        type="List",
    ),
    Param(
        "subarches", "A subarchitecture to import; repeat for several, '*' for all.", type="List"
    ),
    Param(
        "labels",
        "A label to import (stable, candidate, ...); repeat for several, '*' for all.",
        type="List",
    ),
)

BOOT_SOURCE_SELECTIONS = HandlerSpec(
    "BootSourceSelectionsHandler",
    "boot-sources/{boot_source_id}/selections/",
    "Manage the collection of boot source selections.",
    (
        Action(
            "GET",
            None,
            read_selections,
            "List boot source selections.",
            details="Get the selections of the given boot source.",
        ),
        Action(
            "POST",
            None,
            create_selection,
            "Create a boot source selection.",
            (
                Param("os", "The operating system to import, e.g. ubuntu.", required=True),
                Param("release", "The release to import, e.g. noble.", required=True),
                *_SELECTION,
            ),
        ),
    ),
)
BOOT_SOURCE_SELECTION = HandlerSpec(
    "BootSourceSelectionHandler",
    "boot-sources/{boot_source_id}/selections/{id}/",
    "Manage a boot source selection.",
    (
        Action("GET", None, read_selection, "Read a boot source selection."),
        Action(
            "PUT",
            None,
            update_selection,
            "Update a boot source selection.",
            (
                Param("os", "The operating system to import."),
                Param("release", "The release to import."),
                *_SELECTION,
            ),
            details="Fields not given keep their values.",
        ),
        Action(
            "DELETE",
            None,
            delete_selection,
            "Delete a boot source selection.",
            details="Its images are removed by the next import.",
        ),
    ),
)
HANDLERS = (BOOT_SOURCE_SELECTIONS, BOOT_SOURCE_SELECTION)
