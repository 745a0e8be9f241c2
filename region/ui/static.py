"""Static files with content-hashed URLs and a year-long cache lifetime.

``static_url("app.css")`` is ``/MAAS/r/static/<sha256[:12]>/app.css``; a change
of content changes the URL, so responses are ``immutable``. Files are read
once at start-up (a few kilobytes) and served from memory.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

STATIC_ROOT = "/MAAS/r/static"
CACHE_FOREVER = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class StaticFile:
    """One static file: its bytes, type and content hash."""

    body: bytes
    content_type: str
    digest: str


class StaticFiles:
    """The UI's static files, keyed by name."""

    def __init__(self) -> None:
        self.files: dict[str, StaticFile] = {}
        for entry in resources.files("region.ui").joinpath("static").iterdir():
            if not entry.is_file() or entry.name.endswith(".md"):
                continue
            body = entry.read_bytes()
            ctype = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            self.files[entry.name] = StaticFile(
                body=body, content_type=ctype, digest=hashlib.sha256(body).hexdigest()[:12]
            )

    def url(self, name: str) -> str:
        """The hashed URL of ``name`` (KeyError for an unknown file)."""
        return f"{STATIC_ROOT}/{self.files[name].digest}/{name}"

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """GET: the file, if the hash in the URL is its current one."""
        found = self.files.get(request.match_info["name"])
        if found is None or found.digest != request.match_info["digest"]:
            raise web.HTTPNotFound(text="Not found.", content_type="text/plain")
        charset = (
            "utf-8" if found.content_type.startswith(("text/", "application/javascript")) else None
        )
        return web.Response(
            body=found.body,
            content_type=found.content_type,
            charset=charset,
            headers={"Cache-Control": CACHE_FOREVER, "X-Content-Type-Options": "nosniff"},
        )
