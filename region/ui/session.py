"""Sessions and CSRF for the web UI under ``/MAAS/r/``.

The cookie ``bootsync_session`` (HttpOnly, SameSite=Lax, Secure over https)
holds a random token; the session row is keyed by its hash
(region/db/web_auth.py). Every POST, PUT, PATCH and DELETE under ``/MAAS/r/``
must carry the session's CSRF token, as the form field ``csrf_token`` or the
``X-CSRFToken`` header; the login form, which has no session yet, uses a
double-submit cookie. A session's user is also put on the request as the API's
authenticated user, so the UI can call the API's own handlers (uploads, deletes).
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from common.ops.logging import get_logger
from region.api.auth import AUTH, AuthResult
from region.api.http import Handler
from region.context import CTX
from region.db import web_auth
from region.db.web_auth import WebSession

log = get_logger("ui.session")

UI_ROOT = "/MAAS/r"
COOKIE = "bootsync_session"
LOGIN_CSRF_COOKIE = "bootsync_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRFToken"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PUBLIC = (f"{UI_ROOT}/login", f"{UI_ROOT}/static/")
SESSION = web.RequestKey("ui_session", WebSession)
CSRF_FAILED = (
    "The form's security token did not match your session (it may have expired, or the "
    "request came from another site). Reload the page and try again."
)
SESSION_EXPIRED = "Your session has ended: log in again."


def current_session(request: web.Request) -> WebSession | None:
    """The logged-in session of ``request``, or None."""
    return request.get(SESSION)


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    """A cookie as the UI sets them: HttpOnly, SameSite=Lax, Secure over https."""
    response.set_cookie(
        name,
        value,
        path=UI_ROOT + "/",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
        max_age=int(web_auth.SESSION_TTL.total_seconds()),
    )


def new_login_csrf() -> str:
    """A fresh token for the login form's double-submit cookie."""
    return secrets.token_urlsafe(24)


async def _sent_csrf(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


def refuse(request: web.Request, status: int, message: str) -> web.Response:
    """A refusal the page shows: an HTML message (htmx swaps it in) or a full page."""
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Refused</title>'
        f'</head><body><main><p role="alert" id="refusal">{message}</p>'
        f'<p><a href="{UI_ROOT}/images">Back to Images</a></p></main></body></html>'
    )
    return web.Response(status=status, text=body, content_type="text/html")


@web.middleware
async def ui_session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the session, check CSRF on unsafe methods, send strangers to the login page."""
    path = request.path
    if not path.startswith(UI_ROOT + "/"):
        return await handler(request)
    token = request.cookies.get(COOKIE, "")
    session = await web_auth.get_session(request.app[CTX].db, token) if token else None
    if session is not None:
        request[SESSION] = session
        request[AUTH] = AuthResult(user=session.user, reason="")
    if path.startswith(PUBLIC):
        if request.method in UNSAFE and not _same(
            await _sent_csrf(request), request.cookies.get(LOGIN_CSRF_COOKIE, "")
        ):
            log.info("ui_csrf_refused", path=path, method=request.method, login=True)
            return refuse(request, 403, CSRF_FAILED)
        return await handler(request)
    if session is None:
        if request.method == "GET" and request.headers.get("Accept") != "text/event-stream":
            raise web.HTTPSeeOther(f"{UI_ROOT}/login?next={path}")
        log.info("ui_session_refused", path=path, method=request.method)
        return refuse(request, 401, SESSION_EXPIRED)
    if request.method in UNSAFE and not _same(await _sent_csrf(request), session.csrf_token):
        log.info("ui_csrf_refused", path=path, method=request.method, user=session.user.username)
        return refuse(request, 403, CSRF_FAILED)
    return await handler(request)
