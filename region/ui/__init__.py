"""The web UI: the Images page under ``/MAAS/r/images``, served by the region.

:func:`setup_ui` registers its routes, templates (Jinja2 via aiohttp-jinja2),
hashed static files and the session/CSRF middleware on the region app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import resources

import aiohttp_jinja2
import jinja2
from aiohttp import web

from region.ui import accounts, events, views
from region.ui.page import Scheduled
from region.ui.ratelimit import LoginLimiter
from region.ui.session import UI_ROOT, ui_session_middleware
from region.ui.static import STATIC_ROOT, StaticFiles

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith(UI_ROOT + "/") and not response.prepared:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} bytes"


def _templates() -> dict[str, str]:
    """Every template's source, read once (rendering then never touches the disk)."""
    folder = resources.files("region.ui").joinpath("templates")
    return {e.name: e.read_text() for e in folder.iterdir() if e.name.endswith(".html")}


async def setup_ui(app: web.Application, *, scheduler: Callable[[], Scheduled | None]) -> None:
    """Add the Images page to ``app``; ``scheduler`` gives the hourly import's scheduler."""
    static = await asyncio.to_thread(StaticFiles)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.DictLoader(await asyncio.to_thread(_templates)),
        auto_reload=False,
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["static"] = static.url
    env.globals["UI_ROOT"] = UI_ROOT
    env.filters["size"] = _size
    app.middlewares.append(ui_session_middleware)
    app.on_response_prepare.append(_security_headers)
    app[views.LIMITER] = LoginLimiter()
    app[views.SCHEDULER] = scheduler
    app[events.STREAMS] = events.EventStreams()
    app.on_shutdown.append(events.close_streams)
    r = app.router
    r.add_get("/MAAS", views.to_page)
    r.add_get("/MAAS/", views.to_page)
    r.add_get(UI_ROOT + "/", views.to_page)
    r.add_get(STATIC_ROOT + "/{digest}/{name}", static.serve)
    r.add_get(UI_ROOT + "/login", views.login_form)
    r.add_post(UI_ROOT + "/login", views.login)
    r.add_post(UI_ROOT + "/logout", views.logout)
    accounts.add_routes(app)  # MAAS's authenticate-api: a password for an API key
    page = views.PAGE
    r.add_get(page, views.images_page)
    r.add_get(page + "/events", events.status_events)
    r.add_post(page + "/source", views.save_source)
    r.add_post(page + "/source/connect", views.connect_source)
    r.add_post(page + "/selections", views.save_selection)
    r.add_post(page + "/import/stop", views.stop_import)
    r.add_post(page + "/auto-import", views.toggle_auto_import)
    r.add_post(page + "/custom/upload", views.upload_create)
    r.add_put(page + "/custom/upload/{id}/{file_id}", views.upload_chunk)
    r.add_post(page + "/custom/{id}/delete", views.delete_custom)
