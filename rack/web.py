"""What the rack serves: its current snapshot under ``/images/``, and health checks.

``/images/<path>`` is a file of ``boot-resources/current`` through aiohttp's
FileResponse (Range, If-Range, ETag, If-None-Match → 304): what machines being
provisioned fetch. ``current`` is resolved once per request, so a response
comes from one snapshot even while a new one is published. Only complete
snapshots are ever behind ``current``, so a partial file is never served.
``/images/`` and every directory below it answer an HTML listing of their
entries (like nginx's autoindex: links, directories with a trailing ``/``);
a directory asked for without its ``/`` is redirected to it. The bootloaders'
boot files (``bootx64.efi``, ``lpxelinux.0``, ...) sit at the snapshot root,
as over TFTP. The operator's boot config templates (``[boot] templates_dir``) are
served at their own paths, rendered per request against the snapshot served
(rack/bootconfig.py); one that cannot be rendered whole answers 500 naming why.

``/healthz`` answers 200 once the rack has a snapshot to serve and 503 (with
the reason) before; ``/livez`` answers 200 while the process serves at all.
"""

from __future__ import annotations

import asyncio
import html
import os
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import quote

from aiohttp import web

from common.storage.fileserve import SendfileResponse
from rack.bootconfig import BootConfig, RenderError, render_boot_file

IMAGES_PREFIX = "/images"
SNAPSHOT_HEADER = "X-Bootsync-Rack-Snapshot"


class ProblemSource(Protocol):
    """Something that knows what keeps the rack from syncing (the region link)."""

    @property
    def problem(self) -> str | None: ...


BOOT_RESOURCES = web.AppKey("boot_resources", Path)  # holds current -> snapshots/<id>
PROBLEM_SOURCE = web.AppKey("problem_source", ProblemSource)
BOOT_CONFIG = web.AppKey("boot_config", BootConfig)


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
    """A file of the current snapshot, a directory's listing, or 404."""
    raw = request.match_info.get("path", "")
    wants_dir = raw == "" or raw.endswith("/")
    rel = safe_relative(raw.rstrip("/")) if raw.rstrip("/") else PurePosixPath()
    if rel is None:
        raise web.HTTPNotFound(text="Not found.", content_type="text/plain")
    snapshot = await current_snapshot(request.app[BOOT_RESOURCES])
    if snapshot is None:
        raise web.HTTPNotFound(text="No images synced yet.", content_type="text/plain")
    if not wants_dir and (rendered := await boot_file(request, rel, snapshot)) is not None:
        return rendered
    entries = await asyncio.to_thread(list_directory, snapshot / rel)
    if entries is not None:
        if not wants_dir:
            raise web.HTTPMovedPermanently(location=quote(request.path) + "/")
        body = directory_listing(request.path, entries)
        return web.Response(
            text=body, content_type="text/html", headers={SNAPSHOT_HEADER: snapshot.name}
        )
    if wants_dir:
        raise web.HTTPNotFound(text="Not found.", content_type="text/plain")
    # Stat and open happen in a worker thread, the body goes out by os.sendfile in
    # worker threads (common/storage/fileserve.py); a missing file is a 404.
    return SendfileResponse(
        snapshot / rel, chunk_size=1 << 20, headers={SNAPSHOT_HEADER: snapshot.name}
    )


async def boot_file(
    request: web.Request, rel: PurePosixPath, snapshot: Path
) -> web.Response | None:
    """The boot config template at ``rel`` rendered against ``snapshot`` (500 naming why
    when it cannot be), or None when there is no template of that name."""
    boot = request.app.get(BOOT_CONFIG)
    if boot is None or boot.templates_dir is None:
        return None
    rack_url = boot.url_for_http(request.scheme, request.headers.get("Host"))
    try:
        data = await render_boot_file(boot, str(rel), snapshot, rack_url)
    except RenderError as exc:
        raise web.HTTPInternalServerError(text=str(exc) + "\n", content_type="text/plain") from None
    if data is None:
        return None
    headers = {SNAPSHOT_HEADER: snapshot.name, "Cache-Control": "no-store"}
    return web.Response(body=data, content_type="text/plain", charset="utf-8", headers=headers)


def list_directory(path: Path) -> list[tuple[str, bool, int]] | None:
    """(name, is_dir, size) of each visible entry of ``path``, sorted, or None when
    ``path`` is not a directory (blocking)."""
    if not path.is_dir():
        return None
    entries = []
    for entry in os.scandir(path):
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
            size = 0 if is_dir else entry.stat().st_size
        except OSError:  # a dangling link: not listed
            continue
        entries.append((entry.name, is_dir, size))
    return sorted(entries, key=lambda e: (not e[1], e[0]))


def directory_listing(url_path: str, entries: list[tuple[str, bool, int]]) -> str:
    """An HTML page listing ``entries`` (directories first, with a trailing ``/``)."""
    title = html.escape(f"Index of {url_path}")
    lines = [] if url_path.rstrip("/") == IMAGES_PREFIX else ['<a href="../">../</a>']
    for name, is_dir, size in entries:
        shown = name + ("/" if is_dir else "")
        href = html.escape(quote(name) + ("/" if is_dir else ""), quote=True)
        pad = " " * max(1, 60 - len(shown))
        lines.append(f'<a href="{href}">{html.escape(shown)}</a>{pad}{"-" if is_dir else size}')
    rows = "\n".join(lines)
    return (
        f"<html>\n<head><title>{title}</title></head>\n<body>\n"
        f"<h1>{title}</h1><hr><pre>{rows}\n</pre><hr></body>\n</html>\n"
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
    app.router.add_get(IMAGES_PREFIX + "/", serve_image)
    app.router.add_get(IMAGES_PREFIX + "/{path:.+}", serve_image)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", livez)
