"""The images page's handlers: login, the page, and the forms it posts.

Forms work without JavaScript (POST, then a 303 back to the page with a notice;
a 400 re-renders the page with the message next to the control). Validation is
the API's own (region/api/boot_sources.py, region/api/selections.py).
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from common.ops.logging import get_logger
from region.api import boot_resources, uploads
from region.api.boot_sources import URL_TAKEN, describe_offer, validate_source
from region.api.http import Params, ValidationError
from region.api.selections import validate_selection
from region.context import CTX
from region.db import sources as repo_sources
from region.db import web_auth
from region.db.config import set_config
from region.db.selection_sync import apply_selection_changes
from region.db.sources import DuplicateError
from region.db.timestamps import now_iso
from region.ui import session as ui_session
from region.ui.page import PageState, Scheduled, build_tables, offered_rows, read_page
from region.ui.ratelimit import LoginLimiter
from region.ui.selection_diff import RowKey, diff_selections

log = get_logger("ui")

PAGE = f"{ui_session.UI_ROOT}/images"
LIMITER = web.AppKey("ui_login_limiter", LoginLimiter)
SCHEDULER = web.AppKey("ui_scheduler", object)
NOTICES = {
    "source-saved": "Source saved. Its catalogue is being read.",
    "selection-saved": "Selection saved. The import has started.",
    "selection-unchanged": "Nothing changed in the selection.",
    "import-stopped": "The import was stopped.",
    "auto-on": "Hourly sync switched on.",
    "auto-off": "Hourly sync switched off.",
    "image-deleted": "The custom image was deleted.",
}
ADMIN_ONLY = "Only administrators can change images."
COMMISSIONING = (
    "{release} is the commissioning release: machines commission with it and cannot "
    "commission without it. Tick it again, or tick “Remove it anyway” to confirm."
)


def _scheduler(request: web.Request) -> Scheduled | None:
    getter = request.app.get(SCHEDULER)
    return getter() if callable(getter) else None


async def render_page(
    request: web.Request, *, status: int = 200, **context: Any
) -> web.StreamResponse:
    """The images page, with ``context`` (errors, form values) on top of its state."""
    session = ui_session.current_session(request)
    assert session is not None  # the middleware lets only sessions through
    state = context.pop("state", None) or await read_page(request.app, _scheduler(request))
    notice = NOTICES.get(request.query.get("notice", ""), "")
    response = aiohttp_jinja2.render_template(
        "images.html",
        request,
        {
            "s": state,
            "user": session.user,
            "admin": session.user.is_admin,
            "csrf": session.csrf_token,
            "notice": notice,
            "errors": {},
            "form": {},
            **context,
        },
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _require_admin(request: web.Request) -> None:
    session = ui_session.current_session(request)
    if session is None or not session.user.is_admin:
        raise web.HTTPForbidden(text=ADMIN_ONLY, content_type="text/plain")


def _back(notice: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{PAGE}?notice={notice}")


# --- login ----------------------------------------------------------------------


def _login_page(
    request: web.Request, *, error: str = "", status: int = 200, username: str = ""
) -> web.StreamResponse:
    token = ui_session.new_login_csrf()
    response = aiohttp_jinja2.render_template(
        "login.html",
        request,
        {
            "csrf": token,
            "error": error,
            "username": username,
            "next": request.query.get("next", PAGE),
        },
        status=status,
    )
    ui_session.set_cookie(response, request, ui_session.LOGIN_CSRF_COOKIE, token)
    response.headers["Cache-Control"] = "no-store"
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    """GET: the login form (already logged in: the page)."""
    if ui_session.current_session(request) is not None:
        raise web.HTTPSeeOther(PAGE)
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    """POST: check the password (rate-limited per address and username), open a session."""
    form = await request.post()
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    address = request.remote or "unknown"
    limiter = request.app[LIMITER]
    wait = limiter.retry_after(address, username)
    if wait > 0:
        log.warning("ui_login_rate_limited", user=username, address=address)
        return _login_page(
            request,
            error=f"Too many failed attempts. Try again in {int(wait) + 1} seconds.",
            status=429,
            username=username,
        )
    user = await web_auth.authenticate(request.app[CTX].db, username, password)
    if user is None:
        limiter.failed(address, username)
        log.info("ui_login_failed", user=username, address=address)
        return _login_page(
            request, error="Wrong username or password.", status=401, username=username
        )
    limiter.succeeded(address, username)
    token, _csrf = await web_auth.create_session(request.app[CTX].db, user.id)
    log.info("ui_login", user=user.username, address=address)
    target = request.query.get("next", PAGE)
    if not target.startswith(ui_session.UI_ROOT + "/") or target.startswith("//"):
        target = PAGE
    response = web.HTTPSeeOther(target)
    ui_session.set_cookie(response, request, ui_session.COOKIE, token)
    response.del_cookie(ui_session.LOGIN_CSRF_COOKIE, path=ui_session.UI_ROOT + "/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST: end the session."""
    token = request.cookies.get(ui_session.COOKIE, "")
    session = ui_session.current_session(request)
    await web_auth.delete_session(request.app[CTX].db, token)
    if session is not None:
        log.info("ui_logout", user=session.user.username)
    response = web.HTTPSeeOther(f"{ui_session.UI_ROOT}/login")
    response.del_cookie(ui_session.COOKIE, path=ui_session.UI_ROOT + "/")
    raise response


async def to_page(request: web.Request) -> web.StreamResponse:
    """``/MAAS/`` and ``/MAAS/r/``: to the images page."""
    raise web.HTTPFound(PAGE)


async def images_page(request: web.Request) -> web.StreamResponse:
    """GET: the images page."""
    return await render_page(request)


# --- source ---------------------------------------------------------------------


async def _source_params(request: web.Request) -> tuple[Params, dict[str, str]]:
    """The source form as API parameters (maas.io: the configured stable stream)."""
    form = await request.post()
    ctx = request.app[CTX]
    choice = str(form.get("choice", "custom"))
    shown = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    values: MultiDict[str] = MultiDict()
    files: dict[str, bytes] = {}
    if choice == "maasio":
        values["url"] = ctx.config.default_source_url
        values["keyring_filename"] = str(ctx.config.default_keyring)
        values["keyring_data"] = ""
    else:
        values["url"] = str(form.get("url", "")).strip()
        filename = str(form.get("keyring_filename", "")).strip()
        pasted = str(form.get("keyring_data", "")).strip()
        upload = form.get("keyring_file")
        data = upload.file.read() if isinstance(upload, web.FileField) else b""
        values["keyring_filename"] = filename
        if data:
            files["keyring_data"] = data
        elif pasted:
            values["keyring_data"] = pasted
        elif filename:
            values["keyring_data"] = ""
    return Params(values=MultiDictProxy(values), files=files), shown


def _source_errors(exc: ValidationError) -> dict[str, str]:
    fields = {"url", "keyring_filename", "keyring_data"}
    return {(k if k in fields else "source"): " ".join(v) for k, v in exc.errors.items() if v}


async def save_source(request: web.Request) -> web.StreamResponse:
    """POST: create or change the page's source (the first one) after the API's checks."""
    _require_admin(request)
    ctx = request.app[CTX]
    params, shown = await _source_params(request)
    sources = await repo_sources.list_sources(ctx.db)
    current = sources[0] if sources else None
    try:
        changes = await validate_source(ctx.db, params, current)
        if current is None:
            source = await repo_sources.create_source(ctx.db, **changes)
        else:
            saved = await repo_sources.update_source(ctx.db, current.id, **changes)
            if saved is None:
                raise ValidationError.field("__all__", "The source was deleted meanwhile.")
            source = saved
    except ValidationError as exc:
        return await render_page(request, status=400, errors=_source_errors(exc), form=shown)
    except DuplicateError:
        return await render_page(request, status=400, errors={"url": URL_TAKEN}, form=shown)
    session = ui_session.current_session(request)
    log.info(
        "ui_source_saved",
        user=session.user.username if session else "",
        boot_source_id=source.id,
        url=source.url,
    )
    ctx.catalogue.schedule_refresh(reason="ui_source_saved")
    raise _back("source-saved")


async def connect_source(request: web.Request) -> web.StreamResponse:
    """POST: read a not-yet-saved source's catalogue and show what it offers."""
    _require_admin(request)
    ctx = request.app[CTX]
    params, shown = await _source_params(request)
    errors: dict[str, str] = {}
    preview = None
    try:
        # The API's checks and reader (boot-sources ?op=fetch); a URL already saved is
        # fine here, and that source's keyring stands in for one left blank.
        existing = await repo_sources.find_source_by_url(ctx.db, params.get("url") or "")
        changes = await validate_source(ctx.db, params, existing, unique_url=False)
        offer = await describe_offer(ctx, changes)
        preview = build_tables(offer.entries, [], commissioning_release="", today=now_iso()[:10])
    except ValidationError as exc:
        errors = _source_errors(exc)
    return await render_page(
        request,
        status=200 if not errors else 400,
        errors=errors,
        form={**shown, "connected": "1"},
        preview=preview,
    )


# --- selections -------------------------------------------------------------------


def _ticks(form: MultiDictProxy[Any]) -> dict[RowKey, set[str]]:
    ticks: dict[RowKey, set[str]] = {}
    for value in form.getall("image", []):
        if isinstance(value, str) and value.count("/") == 2:
            os, release, arch = value.split("/")
            ticks.setdefault((os, release), set()).add(arch)
    return ticks


def _subarches(form: MultiDictProxy[Any]) -> dict[RowKey, tuple[str, ...]]:
    asked: dict[RowKey, tuple[str, ...]] = {}
    for name, value in form.items():
        if name.startswith("subarches:") and isinstance(value, str):
            os, _, release = name.removeprefix("subarches:").partition("/")
            items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
            if items:
                asked[(os, release)] = items
    return asked


def _selection_params(
    os: str, release: str, arches: tuple[str, ...], sub: tuple[str, ...], labels: tuple[str, ...]
) -> Params:
    values: MultiDict[str] = MultiDict([("os", os), ("release", release)])
    for name, items in (("arches", arches), ("subarches", sub), ("labels", labels)):
        for item in items:
            values.add(name, item)
    return Params(values=MultiDictProxy(values), files={})


async def save_selection(request: web.Request) -> web.StreamResponse:
    """POST: make the selections match the ticks (one transaction), then import."""
    _require_admin(request)
    ctx = request.app[CTX]
    form = await request.post()
    state: PageState = await read_page(request.app, _scheduler(request))
    if state.source is None:
        return await render_page(
            request, status=400, state=state, errors={"selection": "Choose a source first."}
        )
    ticks = _ticks(form)
    current = await repo_sources.list_selections(ctx.db, state.source.id)
    plan = diff_selections(current, ticks, offered_rows(state.tables), _subarches(form))
    row_errors: dict[str, str] = {}
    commissioning = ("ubuntu", state.commissioning_release)
    if any((s.os, s.release) == commissioning for s in plan.delete) and not form.get(
        "confirm_commissioning"
    ):
        row_errors["ubuntu/" + state.commissioning_release] = COMMISSIONING.format(
            release=state.commissioning_release
        )
    for wanted in plan.create:
        params = _selection_params(
            wanted.os, wanted.release, wanted.arches, wanted.subarches, wanted.labels
        )
        try:
            await validate_selection(ctx.db, state.source.id, params, None)
        except ValidationError as exc:
            row_errors[f"{wanted.os}/{wanted.release}"] = " ".join(
                m for msgs in exc.errors.values() for m in msgs
            )
    by_id = {s.id: s for s in current}
    for sel_id, wanted in plan.update:
        params = _selection_params(
            wanted.os, wanted.release, wanted.arches, wanted.subarches, wanted.labels
        )
        try:
            await validate_selection(ctx.db, state.source.id, params, by_id[sel_id])
        except ValidationError as exc:
            row_errors[f"{wanted.os}/{wanted.release}"] = " ".join(
                m for msgs in exc.errors.values() for m in msgs
            )
    if row_errors:
        for table in state.tables:
            for row in table.rows:
                row.error = row_errors.pop(f"{row.os}/{row.release}", "")
                row.ticked = frozenset(ticks.get(row.key, set()))
        return await render_page(
            request,
            status=400,
            state=state,
            errors={"selection": " ".join(row_errors.values()) or "Some rows need attention."},
        )
    if plan.empty:
        raise _back("selection-unchanged")
    try:
        await apply_selection_changes(
            ctx.db,
            state.source.id,
            create=plan.create,
            update=plan.update,
            delete=[s.id for s in plan.delete],
        )
    except DuplicateError:
        return await render_page(
            request,
            status=400,
            errors={"selection": "The selections changed meanwhile: nothing was saved. Try again."},
        )
    session = ui_session.current_session(request)
    log.info(
        "ui_selection_saved",
        user=session.user.username if session else "",
        boot_source_id=state.source.id,
        created=len(plan.create),
        updated=len(plan.update),
        deleted=len(plan.delete),
    )
    ctx.importer.start(reason=f"ui:{session.user.username if session else ''}")
    raise _back("selection-saved")


# --- import, auto-import, custom images -----------------------------------------------


async def stop_import(request: web.Request) -> web.StreamResponse:
    """POST: stop the running import."""
    _require_admin(request)
    await request.app[CTX].importer.stop()
    raise _back("import-stopped")


async def toggle_auto_import(request: web.Request) -> web.StreamResponse:
    """POST: switch the hourly sync (``boot_images_auto_import``) on or off."""
    _require_admin(request)
    form = await request.post()
    on = form.get("enabled") == "true"
    await set_config(request.app[CTX].db, "boot_images_auto_import", on)
    log.info("ui_auto_import_set", enabled=on)
    raise _back("auto-on" if on else "auto-off")


async def delete_custom(request: web.Request) -> web.StreamResponse:
    """POST: delete an uploaded image through the API's own handler."""
    _require_admin(request)
    await boot_resources.delete_resource(request)
    raise _back("image-deleted")


async def upload_create(request: web.Request) -> web.StreamResponse:
    """POST: announce an upload (the API's ``POST boot-resources/``)."""
    _require_admin(request)
    return await uploads.create_resource(request)


async def upload_chunk(request: web.Request) -> web.StreamResponse:
    """PUT: one chunk (the API's ``PUT boot-resources/{id}/upload/{file_id}/``)."""
    _require_admin(request)
    return await uploads.upload_chunk(request)
