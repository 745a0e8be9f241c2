"""``/MAAS/api/2.0/boot-sources/``: the SimpleStreams mirrors the region imports from.

Admin-only as a whole, as in MAAS. Create answers 201, update is partial (an
omitted field keeps its value), delete answers 204 and takes the source's
selections and catalogue with it. Every change schedules a catalogue refresh.
Keyrings are checked with gpg before they are saved (MAAS saves anything).
MAAS 3.8's fields are stored and honoured: ``name`` (unique, the URL by
default), ``priority`` (unique, the higher wins an image two sources offer),
``enabled`` (a disabled source is not read) and ``skip_keyring_verification``
(the unsigned ``index.json`` is read with no keyring; by default set for a
``.json`` URL, as MAAS sets it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from common.errors import BootsyncError, KeyringError, SignatureError
from common.ops.logging import get_logger
from common.ops.tomlconfig import check_http_url
from common.transfer.streams import resolve_source
from common.trust.keyrings import aload_keyring
from region.api.auth import require_admin
from region.api.catalogue import AVAILABLE_IMAGES
from region.api.http import (
    API_ROOT,
    Params,
    ValidationError,
    json_response,
    maas_timestamp,
    no_content,
    not_found,
    path_id,
    read_params,
)
from region.api.maas_config import parse_bool
from region.api.registry import Action, HandlerSpec, Param
from region.config import keyring_file
from region.context import CTX, RegionContext
from region.db import sources as repo_sources
from region.db.connection import Database
from region.db.sources import BootSource, DuplicateError, default_skip_verification
from region.images.catalogue import SourceDescription, describe_unsaved
from simplestreams import StreamFormatError

log = get_logger("api.boot_sources")

MAX_URL_LENGTH = 4096
MAX_PRIORITY = (1 << 31) - 1
MAX_FILENAME_LENGTH = 4096
ONE_KEYRING = "One of keyring_data or keyring_filename must be specified."
ONLY_ONE_KEYRING = "Only one of keyring_filename or keyring_data can be specified."
URL_TAKEN = "Boot source with this Url already exists."
NAME_TAKEN = "Boot source with this Name already exists."
PRIORITY_TAKEN = "Boot source with this Priority already exists."
TAKEN = {"url": URL_TAKEN, "name": NAME_TAKEN, "priority": PRIORITY_TAKEN}
MAX_NAME_LENGTH = 255
SIGNED_IS_VERIFIED = (
    "A signed index (.sjson) is always verified: to read a stream unverified, "
    "point url at its index.json (or at the mirror's root)."
)


def render_source(source: BootSource) -> dict[str, Any]:
    """The JSON object MAAS gives for a boot source (keyring_data in base64)."""
    return {
        "id": source.id,
        "url": source.url,
        "keyring_filename": source.keyring_filename,
        "keyring_data": base64.b64encode(source.keyring_data).decode("ascii"),
        "name": source.name,
        "priority": source.priority,
        "enabled": source.enabled,
        "skip_keyring_verification": source.skip_keyring_verification,
        "created": maas_timestamp(source.created),
        "updated": maas_timestamp(source.updated),
        "resource_uri": f"{API_ROOT}/boot-sources/{source.id}/",
    }


async def source_or_404(request: web.Request, name: str = "id") -> BootSource:
    """The source named by the path parameter ``name``; 404 if there is none."""
    source = await repo_sources.get_source(
        request.app[CTX].db, path_id(request, name, "BootSource")
    )
    if source is None:
        raise not_found("BootSource")
    return source


def _url(params: Params, errors: dict[str, list[str]], *, required: bool) -> str | None:
    url = params.get("url")
    if url is None or url == "":
        if required:
            errors["url"] = ["This field is required."]
        return None
    if len(url) > MAX_URL_LENGTH:
        errors["url"] = [
            f"Ensure this value has at most {MAX_URL_LENGTH} characters (it has {len(url)})."
        ]
        return None
    try:
        return check_http_url(url)
    except ValueError:
        errors["url"] = ["Enter a valid URL."]
        return None


def _keyring_data(params: Params, errors: dict[str, list[str]]) -> bytes | None:
    """The keyring bytes: a file part as is, a text value as base64 (or armored text)."""
    if "keyring_data" not in params:
        return None
    if "keyring_data" in params.files:
        return params.files["keyring_data"]
    value = params.get("keyring_data") or ""
    if value.lstrip().startswith("-----BEGIN PGP"):
        return value.encode()
    text = value.strip()
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        errors["keyring_data"] = [
            "Not valid base64: send the keyring base64-encoded, or upload it as a file."
        ]
        return None


def _keyring_filename(params: Params, errors: dict[str, list[str]]) -> str | None:
    name = params.get("keyring_filename")
    if name is None or name == "":
        return name
    if len(name) > MAX_FILENAME_LENGTH or "\x00" in name or not Path(name).is_absolute():
        errors["keyring_filename"] = ["Enter an absolute path to a keyring file on the region."]
        return None
    return name


def _name(params: Params, errors: dict[str, list[str]]) -> str | None:
    name = (params.get("name") or "").strip()
    if not name:
        return None  # not given: the URL names a new source, an old one keeps its name
    if len(name) > MAX_NAME_LENGTH:
        errors["name"] = [
            f"Ensure this value has at most {MAX_NAME_LENGTH} characters (it has {len(name)})."
        ]
        return None
    return name


def _priority(params: Params, errors: dict[str, list[str]]) -> int | None:
    text = (params.get("priority") or "").strip()
    if not text:
        return None
    try:
        priority = int(text)
    except ValueError:
        errors["priority"] = ["Enter a whole number."]
        return None
    if priority < 0:
        errors["priority"] = ["Ensure this value is greater than or equal to 0."]
        return None
    if priority > MAX_PRIORITY:
        errors["priority"] = [f"Ensure this value is less than or equal to {MAX_PRIORITY}."]
        return None
    return priority


def _flag(params: Params, field: str, errors: dict[str, list[str]]) -> bool | None:
    text = params.get(field)
    if text is None or text.strip() == "":
        return None
    try:
        return parse_bool(text)
    except ValueError as exc:
        errors[field] = [str(exc)]
        return None


async def _check_keyring(filename: str, data: bytes, errors: dict[str, list[str]]) -> None:
    """Add an error when the keyring given (exactly one of the two) holds no usable key."""
    try:
        if data:
            field = "keyring_data"
            await aload_keyring(data, name=field)
        else:
            field = "keyring_filename"
            await aload_keyring(await keyring_file(filename))
    except KeyringError as exc:
        errors[field] = [f"Not a usable GPG keyring ({exc})."]


async def _validate(
    conn: Database, params: Params, current: BootSource | None, *, unique_url: bool = True
) -> dict[str, Any]:
    """The changes ``params`` ask for, validated against ``current`` (None on create).

    ``unique_url`` False skips the check that no other source has the URL (for a
    source that is only read, not saved). Raises ValidationError with every
    problem found, MAAS's messages where MAAS has them.
    """
    errors: dict[str, list[str]] = {}
    url = _url(params, errors, required=current is None)
    filename = _keyring_filename(params, errors)
    data = _keyring_data(params, errors)
    options = {
        "name": _name(params, errors),
        "priority": _priority(params, errors),
        "enabled": _flag(params, "enabled", errors),
        "skip_keyring_verification": _flag(params, "skip_keyring_verification", errors),
    }
    final_url = url or (current.url if current else "")
    skip = options["skip_keyring_verification"]
    if skip is None:  # MAAS: a new source skips for a .json URL; an old one keeps its flag
        skip = (
            current.skip_keyring_verification if current else default_skip_verification(final_url)
        )
    if skip and final_url and resolve_source(final_url, signed=False).signed:
        errors["skip_keyring_verification"] = [SIGNED_IS_VERIFIED]
    if current is not None:
        # Setting one keyring field alone replaces the other: clients send only what changed.
        if filename and data is None:
            data = b""
        if data and filename is None:
            filename = ""
    if "keyring_filename" not in errors and "keyring_data" not in errors:
        kept_filename = current.keyring_filename if current else ""
        kept_data = current.keyring_data if current else b""
        final_filename = kept_filename if filename is None else filename
        final_data = kept_data if data is None else data
        if not final_filename and not final_data and not skip:
            errors["__all__"] = [ONE_KEYRING]
        elif final_filename and final_data:
            errors["__all__"] = [ONLY_ONE_KEYRING]
        elif filename or data:
            await _check_keyring(final_filename, final_data, errors)
    if (
        unique_url
        and url is not None
        and (current is None or url != current.url)
        and await repo_sources.find_source_by_url(conn, url) is not None
    ):
        errors["url"] = [URL_TAKEN]
    if errors:
        raise ValidationError(errors)
    changes = {"url": url, "keyring_filename": filename, "keyring_data": data, **options}
    return {name: value for name, value in changes.items() if value is not None}


def _taken(exc: DuplicateError) -> ValidationError:
    """The 400 for a unique field another source holds (MAAS's words)."""
    field = exc.field if exc.field in TAKEN else "url"
    return ValidationError.field(field, TAKEN[field])


async def validate_source(
    conn: Database, params: Params, current: BootSource | None, *, unique_url: bool = True
) -> dict[str, Any]:
    """The API's checks of a new (``current`` None) or changed source; shared with the UI."""
    return await _validate(conn, params, current, unique_url=unique_url)


async def read_sources(request: web.Request) -> web.StreamResponse:
    """GET: every boot source."""
    require_admin(request)
    sources = await repo_sources.list_sources(request.app[CTX].db)
    return json_response([render_source(source) for source in sources])


async def create_source(request: web.Request) -> web.StreamResponse:
    """POST: a new boot source (201)."""
    user = require_admin(request)
    ctx = request.app[CTX]
    params = await read_params(request)
    changes = await _validate(ctx.db, params, None)
    try:
        source = await repo_sources.create_source(ctx.db, **changes)
    except DuplicateError as exc:
        raise _taken(exc) from None
    log.info(
        "boot_source_created",
        user=user.username,
        boot_source_id=source.id,
        url=source.url,
        keyring="data" if source.keyring_data else "filename",
    )
    ctx.catalogue.schedule_refresh(reason="boot_source_created")
    return json_response(render_source(source), status=201)


async def read_source(request: web.Request) -> web.StreamResponse:
    """GET: one boot source."""
    require_admin(request)
    return json_response(render_source(await source_or_404(request)))


async def update_source(request: web.Request) -> web.StreamResponse:
    """PUT: change the fields given, keep the others."""
    user = require_admin(request)
    ctx = request.app[CTX]
    current = await source_or_404(request)
    params = await read_params(request)
    changes = await _validate(ctx.db, params, current)
    try:
        source = await repo_sources.update_source(ctx.db, current.id, **changes)
    except DuplicateError as exc:
        raise _taken(exc) from None
    if source is None:
        raise not_found("BootSource")
    log.info(
        "boot_source_updated",
        user=user.username,
        boot_source_id=source.id,
        url=source.url,
        fields=sorted(changes),
    )
    ctx.catalogue.schedule_refresh(reason="boot_source_updated")
    return json_response(render_source(source))


async def delete_source(request: web.Request) -> web.StreamResponse:
    """DELETE: the source, its selections and its catalogue (204)."""
    user = require_admin(request)
    ctx = request.app[CTX]
    source = await source_or_404(request)
    if not await repo_sources.delete_source(ctx.db, source.id):
        raise not_found("BootSource")
    log.info("boot_source_deleted", user=user.username, boot_source_id=source.id, url=source.url)
    ctx.catalogue.schedule_refresh(reason="boot_source_deleted")
    return no_content()


async def describe_offer(ctx: RegionContext, changes: Mapping[str, Any]) -> SourceDescription:
    """What the source ``changes`` describe (validated, not saved) offers, read just now.

    ``POST boot-sources/?op=fetch`` and the page's Connect button share it.
    Raises ValidationError naming the field to blame: the keyring field given
    when the signatures do not verify with it, ``url`` when the source cannot
    be reached or read.
    """
    data = bytes(changes.get("keyring_data") or b"")
    try:
        return await describe_unsaved(
            ctx.db,
            ctx.session,
            url=str(changes.get("url") or ""),
            keyring_filename=str(changes.get("keyring_filename") or ""),
            keyring_data=data,
            skip_keyring_verification=changes.get("skip_keyring_verification"),
            proxy=ctx.config.http_proxy,
            frozen_after_hours=ctx.config.frozen_after_hours,
        )
    except SignatureError as exc:
        raise ValidationError.field(
            "keyring_data" if data else "keyring_filename",
            f"The source's signature could not be verified with this keyring: {exc}",
        ) from None
    except (BootsyncError, StreamFormatError) as exc:
        raise ValidationError.field("url", f"Could not read the source: {exc}") from None


def render_offer(description: SourceDescription) -> dict[str, Any]:
    """What ``fetch`` answers: the index read and every image, as ``available_images`` lists them."""
    return {
        "url": description.source.url,
        "index_url": description.index_url,
        "index_updated": description.index_updated,
        "warnings": list(description.warnings),
        "images": [asdict(entry) for entry in description.entries],
    }


async def fetch_source(request: web.Request) -> web.StreamResponse:
    """POST ?op=fetch: what a source not saved offers; it is read, not stored."""
    require_admin(request)
    ctx = request.app[CTX]
    params = await read_params(request)
    changes = await validate_source(ctx.db, params, None, unique_url=False)
    return json_response(render_offer(await describe_offer(ctx, changes)))


_KEYRING = (
    Param(
        "keyring_filename",
        "The path to a keyring file on the region to verify the source's signatures with.",
    ),
    Param(
        "keyring_data",
        "The GPG keyring to verify the source's signatures with: base64, "
        "or the file itself (keyring_data@=FILE).",
    ),
)
_OPTIONS = (
    Param("name", "The name of the boot source (unique; the URL when not given)."),
    Param(
        "priority",
        "Its priority: of two sources offering an image, the higher imports it "
        "(unique, >= 0; one above the highest when not given).",
        type="Int",
    ),
    Param("enabled", "Whether images are imported from it (true by default).", type="Boolean"),
    Param(
        "skip_keyring_verification",
        "Read its unsigned index.json without a keyring (by default, true for a .json URL).",
        type="Boolean",
    ),
)

BOOT_SOURCES = HandlerSpec(
    "BootSourcesHandler",
    "boot-sources/",
    "Manage the collection of boot sources.",
    (
        Action(
            "GET",
            None,
            read_sources,
            "List boot sources.",
            details="Get a listing of boot sources.",
        ),
        Action(
            "POST",
            None,
            create_source,
            "Create a boot source.",
            (
                Param("url", "The URL of the boot source (a SimpleStreams mirror).", required=True),
                *_KEYRING,
                *_OPTIONS,
            ),
            details=(
                "Exactly one of keyring_filename and keyring_data must be given, "
                "unless skip_keyring_verification is set."
            ),
        ),
        Action(
            "POST",
            "fetch",
            fetch_source,
            "Fetch the images a source offers, without saving it.",
            (
                Param("url", "The URL of the source (a SimpleStreams mirror).", required=True),
                *_KEYRING,
                *_OPTIONS,
            ),
            details=(
                "The source is read and its signatures verified as an import would; "
                "nothing is stored. Exactly one of keyring_filename and keyring_data "
                "must be given."
            ),
        ),
    ),
)
BOOT_SOURCE = HandlerSpec(
    "BootSourceHandler",
    "boot-sources/{id}/",
    "Manage a boot source.",
    (
        Action(
            "GET",
            None,
            read_source,
            "Read a boot source.",
            details="Get the boot source with the given id.",
        ),
        Action(
            "PUT",
            None,
            update_source,
            "Update a boot source.",
            (Param("url", "The URL of the boot source."), *_KEYRING, *_OPTIONS),
            details="Fields not given keep their values.",
        ),
        Action(
            "DELETE",
            None,
            delete_source,
            "Delete a boot source.",
            details="Its selections and catalogue go with it.",
        ),
        AVAILABLE_IMAGES,
    ),
)
HANDLERS = (BOOT_SOURCES, BOOT_SOURCE)
