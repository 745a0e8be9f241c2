"""What the rack serves: its current snapshot under ``/images/``, and health checks.

``/images/<path>`` is a file of ``boot-resources/current`` through aiohttp's
FileResponse (Range, If-Range, ETag, If-None-Match → 304): what machines being
provisioned fetch. ``current`` is resolved once per request, so a response
comes from one snapshot even while a new one is published. Only complete
snapshots are ever behind ``current``, so a partial file is never served.

``/healthz`` answers 200 once the rack has a snapshot to serve and 503 (with
the reason) before; ``/livez`` answers 200 while the process serves at all.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path, PurePosixPath
from typing import Protocol

from aiohttp import web

from common.storage.fileserve import SendfileResponse

IMAGES_PREFIX = "/images"
SNAPSHOT_HEADER = "X-Bootsync-Rack-Snapshot"


class ProblemSource(Protocol):
    """Something that knows what keeps the rack from syncing (the region link)."""

    @property
    def problem(self) -> str | None: ...


BOOT_RESOURCES = web.AppKey("boot_resources", Path)  # holds current -> snapshots/<id>
PROBLEM_SOURCE = web.AppKey("problem_source", ProblemSource)


def safe_relative(path: str) -> PurePosixPath | None:
    """``path`` as a relative path inside a snapshot, or None if it could escape or is hidden."""
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or "\\" in path or "\x00" in path:
        return None
    if any(part in {"", ".", ".."} or part.startswith(".") for part in path.split("/")):
        return None
    return rel


async def current_snapshot(root: Path) -> Path | None:
    """The snapshot directory ``root/current`` points at now, or None before the first."""
    try:
        target = await asyncio.to_thread(os.readlink, root / "current")
    except FileNotFoundError:
        return None
    return root / target


async def serve_image(request: web.Request) -> web.StreamResponse:
    """A file of the current snapshot, or 404."""
    rel = safe_relative(request.match_info["path"])
    if rel is None:
        raise web.HTTPNotFound(text="Not found.", content_type="text/plain")
    snapshot = await current_snapshot(request.app[BOOT_RESOURCES])
    if snapshot is None:
        raise web.HTTPNotFound(text="No images synced yet.", content_type="text/plain")
    # Stat and open happen in a worker thread, the body goes out by os.sendfile in
    # worker threads (common/storage/fileserve.py); a missing file is a 404.
    return SendfileResponse(
        snapshot / rel, chunk_size=1 << 20, headers={SNAPSHOT_HEADER: snapshot.name}
    )


async def healthz(request: web.Request) -> web.StreamResponse:
    """200 with the snapshot served, or 503 with the reason there is none yet."""
    snapshot = await current_snapshot(request.app[BOOT_RESOURCES])
    source = request.app.get(PROBLEM_SOURCE)
    problem = source.problem if source is not None else None
    if snapshot is None:
        reason = "no image snapshot synced yet" + (f": {problem}" if problem else "")
        return web.json_response({"ready": False, "reason": reason}, status=503)
    return web.json_response({"ready": True, "snapshot": snapshot.name, "problem": problem})


async def livez(_request: web.Request) -> web.StreamResponse:
    """200 while the process serves requests."""
    return web.json_response({"alive": True})


def add_routes(app: web.Application) -> None:
    """Register the rack's routes (GET and HEAD)."""
    app.router.add_get(IMAGES_PREFIX + "/{path:.+}", serve_image)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", livez)
