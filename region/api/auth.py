"""OAuth 1.0 PLAINTEXT authentication, as MAAS API clients send it.

python-libmaas sends ``Authorization: OAuth realm="OAuth", oauth_nonce="...",
..., oauth_signature="%26<secret>"``; the maas CLI sends the same without the
realm. Values are percent-encoded; the consumer secret is empty, so the decoded
signature is ``&`` followed by the token secret.

:func:`auth_middleware` attaches the key's user to the request when the header
is valid (anonymous paths ignore it); handlers call :func:`require_user` or
:func:`require_admin`. Timestamps and nonces are not checked: a PLAINTEXT
signature is the secret itself, so they would only add clock-skew failures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web

from common.ops.logging import get_logger
from region.api.http import Handler, forbidden
from region.context import CTX
from region.db.users import User, user_for_token

log = get_logger("auth")

_PARAM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"]*)"\s*(?:,|$)')
NOT_ALLOWED = "User is not allowed access to this API."
ADMIN_ONLY = "This method is reserved for admin users."


@dataclass(frozen=True)
class Credentials:
    """What an OAuth header claims: the key's three parts (secret from the signature)."""

    consumer_key: str
    token_key: str
    token_secret: str


@dataclass(frozen=True)
class AuthResult:
    """The outcome of checking a request's header: a user, or why there is none."""

    user: User | None
    reason: str
    consumer_key: str = ""


AUTH = web.RequestKey("bootsync_auth", AuthResult)


class OAuthHeaderError(ValueError):
    """The Authorization header is not a usable OAuth PLAINTEXT header."""


def parse_oauth_header(header: str) -> Credentials:
    """Read the key from an ``OAuth ...`` header; OAuthHeaderError says what is wrong."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "oauth":
        raise OAuthHeaderError("not an OAuth header")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None:
            raise OAuthHeaderError("malformed OAuth parameters")
        params[match.group(1)] = unquote(match.group(2))
        position = match.end()
    method = params.get("oauth_signature_method", "")
    if method != "PLAINTEXT":
        raise OAuthHeaderError(f"unsupported signature method {method!r}")
    missing = [
        name
        for name in ("oauth_consumer_key", "oauth_token", "oauth_signature")
        if not params.get(name)
    ]
    if missing:
        raise OAuthHeaderError(f"missing {', '.join(missing)}")
    consumer_secret, sep, token_secret = params["oauth_signature"].partition("&")
    if not sep or consumer_secret:
        raise OAuthHeaderError("signature is not '&' followed by the token secret")
    return Credentials(
        consumer_key=params["oauth_consumer_key"],
        token_key=params["oauth_token"],
        token_secret=token_secret,
    )


async def _authenticate(request: web.Request) -> AuthResult:
    header = request.headers.get("Authorization")
    if header is None:
        return AuthResult(user=None, reason="missing")
    try:
        creds = parse_oauth_header(header)
    except OAuthHeaderError as exc:
        return AuthResult(user=None, reason=f"bad_header: {exc}")
    user = await user_for_token(
        request.app[CTX].db, creds.consumer_key, creds.token_key, creds.token_secret
    )
    if user is None:
        return AuthResult(user=None, reason="unknown_key", consumer_key=creds.consumer_key)
    return AuthResult(user=user, reason="", consumer_key=creds.consumer_key)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the Authorization header, if any, and record the outcome on the request."""
    request[AUTH] = await _authenticate(request)
    return await handler(request)


def current_user(request: web.Request) -> User | None:
    """The authenticated user of ``request``, or None."""
    result = request.get(AUTH)
    return result.user if result is not None else None


def require_user(request: web.Request) -> User:
    """The authenticated user; raises 401 (with ``WWW-Authenticate``) when there is none."""
    result = request.get(AUTH) or AuthResult(user=None, reason="missing")
    if result.user is not None:
        return result.user
    log.info(
        "auth_failed",
        reason=result.reason,
        path=request.path,
        method=request.method,
        consumer_key=result.consumer_key[:6],
    )
    text = (
        "Authorization Required"
        if result.reason == "missing"
        else "Authorization Error: invalid API key"
    )
    raise web.HTTPUnauthorized(
        text=text, content_type="text/plain", headers={"WWW-Authenticate": 'OAuth realm="OAuth"'}
    )


def require_admin(request: web.Request, *, method_only: bool = False) -> User:
    """The authenticated admin; 401 without a valid key, 403 for other users.

    The 403 text is MAAS's: ``User is not allowed access to this API.`` for an
    admin-only resource, or ``This method is reserved for admin users.`` for an
    admin-only method of a resource others may read (``method_only``).
    """
    user = require_user(request)
    if not user.is_admin:
        log.info("auth_forbidden", user=user.username, path=request.path, method=request.method)
        raise forbidden(ADMIN_ONLY if method_only else NOT_ALLOWED)
    return user
