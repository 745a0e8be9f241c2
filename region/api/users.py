"""``/MAAS/api/2.0/users/?op=whoami``: who the API key belongs to (the maas CLI's login check)."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from region.api.auth import require_user
from region.api.http import API_ROOT, json_response
from region.api.registry import Action, HandlerSpec


async def whoami(request: web.Request) -> web.StreamResponse:
    """GET ?op=whoami: the key's user (200), or 401 for a missing or bad key."""
    user = require_user(request)
    return json_response(
        {
            "username": user.username,
            "email": user.email,
            "is_superuser": user.is_admin,
            "is_local": True,
            "resource_uri": f"{API_ROOT}/users/{quote(user.username, safe='')}/",
        }
    )


USERS = HandlerSpec(
    "UsersHandler",
    "users/",
    "Manage the user accounts.",
    (Action("GET", "whoami", whoami, "Show the user the API key belongs to."),),
)
HANDLERS = (USERS,)
