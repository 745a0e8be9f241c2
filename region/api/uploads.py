"""Custom image upload: ``POST boot-resources/`` and ``PUT boot-resources/{id}/upload/{file_id}/``.

Admin-only (403 ``This method is reserved for admin users.``). Create takes the
image in one request (``content``) or announces it (``sha256`` + ``size``) and
answers 201 with the resource, whose new file carries an ``upload_uri`` while
incomplete. A blob already stored with that sha256 makes the file complete at
once (the clients then send nothing). Chunks are raw PUT bodies appended in
order; each must answer exactly 200 (python-libmaas and the maas CLI check).
The sha256 is checked when the last byte arrives; a mismatch discards the
bytes and the upload starts again from zero. A completed upload is published
in the region's stream, so racks fetch it like a synced image.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import weakref
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from common.errors import BootsyncError, InsufficientSpaceError, StoreError
from common.ops.logging import get_logger, short_sha
from region.api.auth import require_admin
from region.api.boot_resources import TYPE_NAMES, resource_detail, upload_uri
from region.api.http import json_response, not_found, path_id
from region.api.registry import Action, HandlerSpec, Param
from region.api.upload_form import read_upload_form
from region.api.upload_rules import Offered, UploadRequest, check_upload, is_custom
from region.context import CTX, ImportControl, RegionContext
from region.db import config as repo_config
from region.db import uploads as repo_uploads
from region.db.resources import SYNCED
from region.db.uploads import ResourceClashError, UploadFile
from region.images.status import progress
from region.images.upload_area import UploadArea

log = get_logger("api.uploads")

MISSING_DATA = "Missing data."
LENGTH_MISMATCH = "Content-Length doesn't equal size of received data."
COMPLETE = "Cannot upload to a complete file."
TOO_MUCH = "Too much data received."
SHA_MISMATCH = "Saved content does not match given SHA256 value."
SIZE_CLASH = "File already exists with sha256 that is of different size."
RESOURCE_CLASH = "Boot resource of name, and architecture already exists."
REPUBLISH_RETRY_S = 1.0


class UploadState:
    """Per-app upload bookkeeping: one lock per file, and a publish waiting for an import."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self.pending_publish: asyncio.Task[None] | None = None

    def lock(self, file_id: int) -> asyncio.Lock:
        """The lock serialising chunks of ``file_id`` (kept while someone holds it)."""
        lock = self._locks.get(file_id)
        if lock is None:
            lock = self._locks[file_id] = asyncio.Lock()
        return lock


UPLOADS = web.AppKey("uploads", UploadState)


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=message, content_type="text/plain")


def _no_space(exc: Exception) -> web.HTTPInsufficientStorage:
    return web.HTTPInsufficientStorage(
        text=f"No space left on device: {exc}", content_type="text/plain"
    )


def _disk_full(exc: BaseException) -> bool:
    """An OSError ENOSPC, raised as is or as the cause of a StoreError."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    return isinstance(cause, OSError) and cause.errno == errno.ENOSPC


async def _republish_when_idle(importer: ImportControl) -> None:
    while True:  # ImportControl offers no "import ended" event: poll
        if await importer.republish(reason="boot_resource_uploaded"):
            return
        await asyncio.sleep(REPUBLISH_RETRY_S)


async def publish_upload(app: web.Application, ctx: RegionContext) -> None:
    """Publish the stream with a completed upload; after the running import if there is one.

    An import publishes when it ends, but it may be past that step already,
    so a follow-up publish waits for it.
    """
    try:
        if await ctx.importer.republish(reason="boot_resource_uploaded"):
            return
    except BootsyncError as exc:  # stored all the same; the next import publishes it
        log.warning("stream_republish_failed", error=str(exc))
        return
    state = app[UPLOADS]
    if state.pending_publish is None or state.pending_publish.done():
        state.pending_publish = asyncio.get_running_loop().create_task(
            _republish_when_idle(ctx.importer)
        )


async def create_resource(request: web.Request) -> web.StreamResponse:
    """POST: a new uploaded set (201 with the resource); ``content`` stores it at once."""
    user = require_admin(request, method_only=True)
    ctx = request.app[CTX]
    area = UploadArea(ctx.store)
    try:
        params, staged = await read_upload_form(request, area)
    except (OSError, StoreError) as exc:
        if _disk_full(exc):
            raise _no_space(exc) from None
        raise
    try:
        names, arches = await repo_uploads.catalogue_names(ctx.db)
        checked = await _with_default_base(
            ctx,
            check_upload(
                params,
                Offered(frozenset(names), frozenset(arches)),
                has_content=staged is not None,
            ),
        )
        if staged is not None and checked.sha256 not in (None, staged.sha256):
            raise _bad(SHA_MISMATCH)
        sha256 = staged.sha256 if staged else checked.sha256
        size = staged.size if staged else checked.size
        assert sha256 is not None
        assert size is not None
        if await _size_clash(ctx, sha256, size):
            raise web.HTTPBadRequest(text=SIZE_CLASH, content_type="text/plain")
        stored = await ctx.store.has(sha256, size)
        if staged is not None and not stored:
            await area.commit_staged(staged)
            stored = True
        elif not stored:
            await ctx.store.ensure_space(size)
        resource_id, file_id = await repo_uploads.create_upload(
            ctx.db, checked.upload, sha256=sha256, size=size, stored=stored
        )
    except ResourceClashError:
        raise web.HTTPBadRequest(text=RESOURCE_CLASH, content_type="text/plain") from None
    except InsufficientSpaceError as exc:
        raise _no_space(exc) from None
    finally:
        if staged is not None:
            await area.drop_staged(staged)
    log.info(
        "boot_resource_upload_created",
        user=user.username,
        boot_resource_id=resource_id,
        file_id=file_id,
        name=checked.upload.name,
        architecture=checked.upload.architecture,
        sha256=short_sha(sha256),
        bytes=size,
        complete=stored,
        in_request=staged is not None,
    )
    if stored:
        await publish_upload(request.app, ctx)
    await area.sweep(await repo_uploads.incomplete_file_ids(ctx.db))
    detail = await resource_detail(request, resource_id)
    if detail is None:  # deleted meanwhile
        raise not_found("BootResource")
    return json_response(detail, status=201)


async def _with_default_base(ctx: RegionContext, checked: UploadRequest) -> UploadRequest:
    """MAAS's default base image for a custom upload without one.

    The base its earlier upload (same name and architecture) recorded, else the
    commissioning OS and release (``ubuntu/noble``).
    """
    upload = checked.upload
    if upload.base_image or not is_custom(upload.name):
        return checked
    base = await repo_uploads.uploaded_base_image(ctx.db, upload.name, upload.architecture)
    if not base:
        osystem = await repo_config.get_config(ctx.db, "commissioning_osystem")
        series = await repo_config.get_config(ctx.db, "commissioning_distro_series")
        base = f"{osystem}/{series}"
    return dataclasses.replace(checked, upload=dataclasses.replace(upload, base_image=base))


async def _size_clash(ctx: RegionContext, sha256: str, size: int) -> bool:
    if any(other != size for other in await repo_uploads.sizes_of(ctx.db, sha256)):
        return True
    stored = await ctx.store.size_of(sha256)
    return stored is not None and stored != size


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(1 << 20):
        yield chunk


def render_file(upload: UploadFile, bytes_done: int) -> dict[str, Any]:
    """The upload's state after a chunk: size, bytes received, complete (and its URI)."""
    data: dict[str, Any] = {
        "id": upload.id,
        "sha256": upload.sha256,
        "size": upload.size,
        "bytes_received": bytes_done,
        "complete": bytes_done >= upload.size,
    }
    if not data["complete"]:
        data["progress"] = progress(bytes_done, upload.size)
        data["upload_uri"] = upload_uri(upload.resource_id, upload.id)
    return data


async def upload_chunk(request: web.Request) -> web.StreamResponse:
    """PUT: append the body to the file; 200 with its state; the last chunk verifies it."""
    user = require_admin(request, method_only=True)
    ctx = request.app[CTX]
    resource_id = path_id(request, "id", "BootResourceFile")
    file_id = path_id(request, "file_id", "BootResourceFile")
    async with request.app[UPLOADS].lock(file_id):
        upload = await repo_uploads.get_file(ctx.db, resource_id, file_id)
        if upload is None:
            raise not_found("BootResourceFile")
        if upload.rtype == SYNCED:
            raise web.HTTPForbidden(
                text=f"Cannot upload to a resource of type: {TYPE_NAMES[SYNCED]}.",
                content_type="text/plain",
            )
        if upload.complete:
            raise _bad(COMPLETE)
        length = request.content_length
        if not length:
            raise _bad(MISSING_DATA)
        if await ctx.store.has(upload.sha256, upload.size):  # stored meanwhile by another
            await _finish(request, ctx, upload, user.username, chunk=False)
            return json_response(render_file(upload, upload.size))
        area = UploadArea(ctx.store)
        offset = min(upload.bytes_done, await area.partial_size(file_id))
        if offset + length > upload.size:
            raise _bad(TOO_MUCH)
        try:
            appended = await area.append(
                file_id, offset, _body(request), last=offset + length == upload.size
            )
        except (ConnectionError, HttpProcessingError, asyncio.IncompleteReadError) as exc:
            log.info("upload_chunk_cut_short", file_id=file_id, error=str(exc))
            raise _bad(LENGTH_MISMATCH) from None
        except (OSError, StoreError) as exc:
            if _disk_full(exc):
                raise _no_space(exc) from None
            raise
        received = appended.received
        if received != length:
            raise _bad(LENGTH_MISMATCH)
        done = offset + received
        log.info(
            "upload_chunk_received",
            user=user.username,
            file_id=file_id,
            bytes=received,
            bytes_done=done,
            size=upload.size,
        )
        if done < upload.size:
            await repo_uploads.record_progress(ctx.db, file_id, done)
            return json_response(render_file(upload, done))
        if appended.sha256 != upload.sha256:
            await area.discard(file_id)
            await repo_uploads.record_progress(ctx.db, file_id, 0)
            log.warning(
                "upload_sha256_mismatch",
                file_id=file_id,
                sha256=short_sha(upload.sha256),
                bytes=done,
            )
            raise _bad(SHA_MISMATCH)
        await area.commit(file_id, upload.sha256, upload.size)
        await _finish(request, ctx, upload, user.username, chunk=True)
        return json_response(render_file(upload, upload.size))


async def _finish(
    request: web.Request, ctx: RegionContext, upload: UploadFile, username: str, *, chunk: bool
) -> None:
    if not chunk:
        await UploadArea(ctx.store).discard(upload.id)
    await repo_uploads.complete(ctx.db, upload)
    log.info(
        "boot_resource_upload_completed",
        user=username,
        boot_resource_id=upload.resource_id,
        file_id=upload.id,
        sha256=short_sha(upload.sha256),
        bytes=upload.size,
    )
    await publish_upload(request.app, ctx)


async def _cancel_pending(app: web.Application) -> None:
    task = app[UPLOADS].pending_publish
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def setup_uploads(app: web.Application) -> None:
    """The uploads' shared state and its shutdown hook (the routes come from the specs below)."""
    app[UPLOADS] = UploadState()
    app.on_shutdown.append(_cancel_pending)


_UPLOAD = (
    Param(
        "name",
        "The image's name: a bare name (or custom/NAME) for a custom image, "
        "or OS/RELEASE for a supported operating system.",
        required=True,
    ),
    Param("architecture", "ARCH/SUBARCH, e.g. amd64/generic.", required=True),
    Param("title", "A title shown for the image."),
    Param(
        "filetype",
        "tgz (default), tbz, txz, ddtgz, ddtbz, ddtxz, ddtar, ddbz2, ddgz, ddxz or ddraw.",
    ),
    Param("base_image", "OS/RELEASE a custom image is built on (ubuntu, centos or rhel)."),
    Param("content", "The image file (content@=FILE) sent in this request.", type="File"),
    Param(
        "sha256",
        "The image's sha256 when it is uploaded afterwards with PUT to the file's upload_uri.",
    ),
    Param("size", "The image's size in bytes, with sha256.", type="Int"),
    Param(
        "keep_old", "true keeps the previously uploaded versions (default false).", type="Boolean"
    ),
)

# An action of BootResourcesHandler (region/api/boot_resources.py); region/api/handlers.py adds it.
CREATE_RESOURCE = Action(
    "POST",
    None,
    create_resource,
    "Upload a boot resource.",
    _UPLOAD,
    details="Send content@=FILE, or sha256 and size and then PUT the bytes to "
    "the upload_uri of the file in the answer.",
)
BOOT_RESOURCE_FILE_UPLOAD = HandlerSpec(
    "BootResourceFileUploadHandler",
    "boot-resources/{id}/upload/{file_id}/",
    "Upload a boot resource file.",
    (
        Action(
            "PUT",
            None,
            upload_chunk,
            "Append raw bytes to an uploaded file.",
            details="The body is the next chunk (application/octet-stream).",
        ),
    ),
    hidden=True,
)
HANDLERS = (BOOT_RESOURCE_FILE_UPLOAD,)
