"""``/MAAS/rack/v1/...``: the region's side of the rack protocol (common/rackproto.py).

Every call needs ``Authorization: Bearer <rack secret>`` (401 plain text
otherwise, logged as ``rack_auth_failed``). A rack that holds its own credential
(issued at its first registration) must also send it in ``CREDENTIAL_HEADER``
to re-register under its id, report or listen (403 plain text otherwise,
logged as ``rack_credential_refused``). A body that is not the expected JSON is
a 400 ``{field: [message]}``; an unknown rack is a 404.
:func:`add_routes` also ends the racks' event streams at region shutdown, so
the server does not wait for them.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from common.ops.logging import get_logger
from common.rackproto import (
    AUTH_SCHEME,
    CREDENTIAL_HEADER,
    EVENTS_PATH,
    REGISTER_PATH,
    STATUS_PATH,
    RegistrationReply,
    registration_from_json,
    status_from_json,
    to_json,
)
from region.api.http import ValidationError, json_response, not_found
from region.context import CTX, RegionContext
from region.db.racks import (
    RackCredentialError,
    check_credential,
    issue_credential,
    register_rack,
    store_status,
    touch_rack,
)
from region.rackhub.hub import RackHub
from region.rackhub.secret import bearer_token, check_bearer

log = get_logger("api.rack_protocol")

RACK_MODEL = "RackController"
_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}  # proxies must not buffer the stream


def _hub(request: web.Request) -> tuple[RegionContext, RackHub]:
    ctx = request.app[CTX]
    if ctx.racks is None or ctx.racks.closed:
        raise web.HTTPServiceUnavailable(
            text="The region is not accepting racks now.", content_type="text/plain"
        )
    return ctx, ctx.racks


def _authorize(request: web.Request, hub: RackHub) -> None:
    header = request.headers.get("Authorization")
    if check_bearer(header, hub.secret):
        return
    reason = "missing" if bearer_token(header) is None else "wrong_secret"
    log.warning("rack_auth_failed", reason=reason, path=request.path, remote=request.remote)
    text = (
        "Authorization Required: send the region's rack secret as a Bearer token."
        if reason == "missing"
        else "Authorization Error: wrong rack secret."
    )
    raise web.HTTPUnauthorized(
        text=text,
        content_type="text/plain",
        headers={"WWW-Authenticate": f'{AUTH_SCHEME} realm="bootsync"'},
    )


def _credential(request: web.Request) -> str | None:
    return request.headers.get(CREDENTIAL_HEADER, "").strip() or None


def _credential_refused(request: web.Request, exc: RackCredentialError) -> web.HTTPForbidden:
    log.warning(
        "rack_credential_refused",
        system_id=exc.system_id,
        reason=exc.reason,
        path=request.path,
        remote=request.remote,
    )
    return web.HTTPForbidden(
        text=(
            f"Forbidden: {exc}. Another rack may not take its identity. If this is that "
            "rack and its rack.json was lost or restored from an old copy, remove rack.json "
            "from its data directory: it then registers as a new rack."
        ),
        content_type="text/plain",
    )


async def _known_rack(request: web.Request, ctx: RegionContext, system_id: str) -> None:
    """404 for an unknown rack, 403 for a call without the rack's own credential."""
    try:
        known = await check_credential(ctx.db, system_id, _credential(request))
    except RackCredentialError as exc:
        raise _credential_refused(request, exc) from None
    if not known:
        raise not_found(RACK_MODEL)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise ValidationError.field("__all__", "The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise ValidationError.field("__all__", "The body must be a JSON object.")
    return data


def _invalid(exc: ValueError) -> ValidationError:
    name, sep, message = str(exc).partition(": ")
    return (
        ValidationError.field(name, message) if sep else ValidationError.field("__all__", str(exc))
    )


async def register(request: web.Request) -> web.StreamResponse:
    """POST register: a Registration in, a RegistrationReply out (new id if unknown).

    The reply carries the rack's own credential when it holds none yet (a new
    rack, or one registered before credentials existed).
    """
    ctx, hub = _hub(request)
    _authorize(request, hub)
    try:
        reg = registration_from_json(await _json_object(request))
    except ValueError as exc:
        raise _invalid(exc) from None
    try:
        rack, new = await register_rack(ctx.db, reg, credential=_credential(request))
    except RackCredentialError as exc:
        raise _credential_refused(request, exc) from None
    credential = await issue_credential(ctx.db, rack.system_id)
    if hub.keyring_b64 is None:
        hub.keyring_b64 = base64.b64encode(await ctx.region_key.aexport_public()).decode()
    log.info(
        "rack_registered",
        system_id=rack.system_id,
        hostname=rack.hostname,
        url=rack.url,
        new=new,
        asked_for=reg.system_id,
        credential_issued=credential is not None,
    )
    reply = RegistrationReply(
        system_id=rack.system_id,
        region_keyring=hub.keyring_b64,
        region_fingerprint=ctx.region_key.fingerprint,
        credential=credential,
    )
    return json_response(to_json(reply))


async def report_status(request: web.Request) -> web.StreamResponse:
    """POST racks/{system_id}/status: store the rack's RackStatus (204)."""
    ctx, hub = _hub(request)
    _authorize(request, hub)
    system_id = request.match_info["system_id"]
    await _known_rack(request, ctx, system_id)
    try:
        status = status_from_json(await _json_object(request))
        stored = await store_status(ctx.db, system_id, status)
    except ValueError as exc:
        raise _invalid(exc) from None
    if not stored:
        raise not_found(RACK_MODEL)
    log.info(
        "rack_status_reported",
        system_id=system_id,
        state=status.state,
        snapshot_id=status.snapshot_id,
        images=len(status.images),
        error=status.error,
    )
    return web.Response(status=204)


async def events(request: web.Request) -> web.StreamResponse:
    """GET racks/{system_id}/events: server-sent events until either side goes away."""
    ctx, hub = _hub(request)
    _authorize(request, hub)
    system_id = request.match_info["system_id"]
    await _known_rack(request, ctx, system_id)
    await touch_rack(ctx.db, system_id)
    if hub.closed:  # shut down meanwhile; nothing is awaited between here and connect()
        raise web.HTTPServiceUnavailable(
            text="The region is shutting down.", content_type="text/plain"
        )
    resp = web.StreamResponse(headers=_SSE_HEADERS)
    with hub.connect(system_id) as box:
        try:
            await resp.prepare(request)
            await resp.write(b": connected\n\n")
            while (batch := await box.take(hub.keepalive_s)) is not None:
                chunk = b"".join(
                    f"event: {name}\ndata: {data}\n\n".encode() for name, data in batch
                )
                await resp.write(chunk or b": keepalive\n\n")
        except ConnectionResetError:  # the rack went away; it reconnects on its own
            return resp
    return resp


async def close_rack_streams(app: web.Application) -> None:
    """on_shutdown: end every rack event stream so the server stops promptly."""
    ctx = app.get(CTX)
    if ctx is not None and ctx.racks is not None:
        ctx.racks.close()


def add_routes(app: web.Application) -> None:
    """Register the protocol's three paths and the shutdown hook."""
    app.router.add_post(REGISTER_PATH, register)
    app.router.add_post(STATUS_PATH, report_status)
    app.router.add_get(EVENTS_PATH, events)
    app.on_shutdown.append(close_rack_streams)
