"""``GET /MAAS/r/images/events``: the live status as Server-Sent Events.

Each ``status`` event carries the status section of the page as HTML (the
template ``_status.html``), sent when it changes: its state is read about
every second while an import runs and every few seconds otherwise. A comment
line keeps idle connections open through proxies. Streams end when the region
shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp_jinja2
from aiohttp import web

from common.ops.logging import get_logger
from region.context import CTX
from region.db.page_reads import last_finished_import
from region.ui import session as ui_session
from region.ui.page import read_images, read_racks, short_time

log = get_logger("ui.events")

BUSY_INTERVAL_S = 1.0
IDLE_INTERVAL_S = 3.0
KEEPALIVE_S = 15.0


class EventStreams:
    """The open event streams, so shutdown can end them."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()


STREAMS = web.AppKey("ui_event_streams", EventStreams)


async def render_status(request: web.Request) -> str:
    """The status section as HTML (what the page shows and the stream sends)."""
    ctx = request.app[CTX]
    session = ui_session.current_session(request)
    last = await last_finished_import(ctx.db)
    images = await read_images(ctx, last)
    return aiohttp_jinja2.render_string(
        "_status.html",
        request,
        {
            "importing": ctx.importer.is_importing(),
            "images": [i for i in images if not i.uploaded],
            "custom_images": [i for i in images if i.uploaded],
            "last_import": last,
            "last_finished": short_time(last.finished if last else None),
            "racks": await read_racks(ctx),
            "admin": session is not None and session.user.is_admin,
            "csrf": session.csrf_token if session else "",
        },
    )


def _event(name: str, html: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n".encode()


async def status_events(request: web.Request) -> web.StreamResponse:
    """Stream the status section whenever it changes."""
    streams = request.app[STREAMS]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    last_sent = ""
    idle = 0.0
    try:
        await response.write(b"retry: 2000\n\n")
        while not streams.closing.is_set():
            html = await render_status(request)
            if html != last_sent:
                await response.write(_event("status", html))
                last_sent, idle = html, 0.0
            interval = (
                BUSY_INTERVAL_S if request.app[CTX].importer.is_importing() else IDLE_INTERVAL_S
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(streams.closing.wait(), interval)
            idle += interval
            if idle >= KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                idle = 0.0
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


async def close_streams(app: web.Application) -> None:
    """At shutdown: end every open stream."""
    app[STREAMS].closing.set()
