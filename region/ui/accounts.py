"""``POST /MAAS/accounts/authenticate/``: MAAS's ``authenticate-api``, a password for an API key.

Clients that log in with a username and password (python-libmaas's
``connect(url, username=..., password=...)``) post them here, as form fields
``username``, ``password`` and an optional ``consumer``, and get back
``{consumer_key, name, token_key, token_secret}``: the user's earliest API key,
made now if the user has none (bootsync keys carry no consumer name, so
``consumer`` only names a key made now). A wrong password or an unknown user is
MAAS's bare 403; failed attempts are rate-limited per address and username as
the Images page's login is (429 with ``Retry-After``). The user logs nowhere
in: no session is opened.
"""

from __future__ import annotations

from aiohttp import web

from common.ops.logging import get_logger
from region.context import CTX
from region.db import users as repo_users
from region.db import web_auth
from region.ui.views import LIMITER

log = get_logger("ui.accounts")

AUTHENTICATE_PATH = "/MAAS/accounts/authenticate/"


async def authenticate(request: web.Request) -> web.StreamResponse:
    """POST: the user's API key for a right password; 403 otherwise (405 for other methods)."""
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["POST"])
    form = await request.post()
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    consumer = str(form.get("consumer", ""))
    address = request.remote or "unknown"
    limiter = request.app[LIMITER]
    wait = limiter.retry_after(address, username)
    if wait > 0:
        log.warning("api_login_rate_limited", user=username, address=address)
        raise web.HTTPTooManyRequests(headers={"Retry-After": str(int(wait) + 1)})
    db = request.app[CTX].db
    user = await web_auth.authenticate(db, username, password)
    if user is None:
        limiter.failed(address, username)
        log.info("api_login_failed", user=username, address=address)
        raise web.HTTPForbidden()
    limiter.succeeded(address, username)
    key = await repo_users.first_token(db, user.id)
    created = key is None
    if key is None:
        key = await repo_users.create_token(db, user.id)
    log.info("api_login", user=user.username, address=address, key_created=created)
    consumer_key, token_key, token_secret = key
    return web.json_response(
        {
            "consumer_key": consumer_key,
            "name": consumer,
            "token_key": token_key,
            "token_secret": token_secret,
        }
    )


def add_routes(app: web.Application) -> None:
    """Route the authenticate endpoint (every method: non-POST answers 405 as MAAS does)."""
    app.router.add_route("*", AUTHENTICATE_PATH, authenticate)
