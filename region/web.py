"""The region's published stream over HTTP, anonymous as in MAAS.

``/MAAS/images-stream/<path>`` serves the file at ``<path>`` in the current
stream snapshot through aiohttp's FileResponse (Range, If-Range, ETag,
If-None-Match → 304). ``/MAAS/images-stream/region-keyring.gpg`` is the
region's public key, served even before the first import.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path, PurePosixPath

from aiohttp import web

from common.storage.fileserve import SendfileResponse
from region.images.publish import KEYRING_NAME

STREAM_PREFIX = "/MAAS/images-stream"

SNAPSHOT_HEADER = "X-Bootsync-Snapshot"

STREAM_ROOT = web.AppKey("stream_root", Path)  # <data_dir>/stream: holds current -> snapshot
KEYRING_PATH = web.AppKey("region_keyring_path", Path)


def safe_relative(path: str) -> PurePosixPath | None:
    """``path`` as a relative path inside the stream, or None if it could escape or is hidden."""
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or "\\" in path or "\x00" in path:
        return None
    if any(part in {"", ".", ".."} or part.startswith(".") for part in rel.parts):
        return None
    return rel


async def serve_stream_file(request: web.Request) -> web.StreamResponse:
    """A file of the current snapshot, or 404.

    ``current`` is resolved once, so the file comes from one snapshot even if a
    new one is published meanwhile; ``X-Bootsync-Snapshot`` names it (racks
    report it back as the snapshot they serve).
    """
    rel = safe_relative(request.match_info["path"])
    if rel is None:
        raise web.HTTPNotFound(text="Not found.", content_type="text/plain")
    root = request.app[STREAM_ROOT]
    try:
        target = await asyncio.to_thread(os.readlink, root / "current")
    except FileNotFoundError:
        raise web.HTTPNotFound(text="Nothing published yet.", content_type="text/plain") from None
    snapshot = root / target
    # Stat and open happen in a worker thread, the body goes out by os.sendfile in
    # worker threads (common/storage/fileserve.py); a missing file is a 404.
    return SendfileResponse(
        snapshot / rel, chunk_size=1 << 20, headers={SNAPSHOT_HEADER: snapshot.name}
    )


async def serve_keyring(request: web.Request) -> web.StreamResponse:
    """The region's public key (binary OpenPGP), which racks pin at registration."""
    return web.FileResponse(
        request.app[KEYRING_PATH], headers={"Content-Type": "application/pgp-keys"}
    )


def add_routes(app: web.Application) -> None:
    """Register the stream routes (GET and HEAD)."""
    app.router.add_get(f"{STREAM_PREFIX}/{KEYRING_NAME}", serve_keyring)
    app.router.add_get(STREAM_PREFIX + "/{path:.+}", serve_stream_file)
