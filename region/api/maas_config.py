"""``/MAAS/api/2.0/maas/``: ``op=get_config`` (any user) and ``op=set_config`` (admins).

The image-related keys exist: ``boot_images_auto_import``,
``enable_http_proxy``, ``boot_images_no_proxy`` (booleans: true/false, yes/no,
on/off, 1/0, any case), ``http_proxy`` (an http(s) URL, or empty for none),
``maas_name`` (any non-empty text), ``boot_images_import_interval_minutes``
(MAAS 3.8; 1 to 10080, applied to the running schedule at once), and the OS
settings ``default_osystem``, ``default_distro_series``,
``commissioning_osystem``, ``commissioning_distro_series`` and
``default_min_hwe_kernel``, which take only what the region's images offer
(region/images/os_releases.py), as MAAS's choice fields do.
A bad value is a 400 keyed by the config name, as MAAS keys its form errors;
so is an unknown name (MAAS's ``<name> is not a valid config setting ...``).
Changing a proxy setting refreshes the catalogue, as in MAAS. Non-admins read
a URL's user and password as ``***`` (``http://***@proxy:3128/``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from common.ops.logging import get_logger
from common.ops.tomlconfig import check_http_url
from region.api.auth import require_admin, require_user
from region.api.http import (
    ValidationError,
    json_response,
    read_params,
    text_response,
)
from region.api.registry import Action, HandlerSpec, Param
from region.context import CTX
from region.db import config as repo_config
from region.db.connection import Database
from region.images.os_releases import setting_choices

log = get_logger("api.maas_config")

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_PROXY_KEYS = frozenset({"http_proxy", "enable_http_proxy", "boot_images_no_proxy"})
MAX_NAME_LENGTH = 255
MAX_INTERVAL_MINUTES = 7 * 24 * 60


def parse_bool(text: str) -> bool:
    """true/false, yes/no, on/off or 1/0 in any case as a bool; else ValueError."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"Enter true or false (also yes/no, on/off, 1/0), not {text!r}.")


def parse_proxy(text: str) -> str | None:
    """An http(s) proxy URL; empty text means no proxy (None); else ValueError."""
    text = text.strip()
    if not text:
        return None
    try:
        return check_http_url(text)
    except ValueError:
        raise ValueError("Enter a valid URL.") from None


def parse_name(text: str) -> str:
    """Any non-empty text (MAAS's required CharField); else ValueError."""
    if not text.strip():
        raise ValueError("This field is required.")
    if len(text) > MAX_NAME_LENGTH:
        raise ValueError(
            f"Ensure this value has at most {MAX_NAME_LENGTH} characters (it has {len(text)})."
        )
    return text


def parse_interval(text: str) -> int:
    """Whole minutes from 1 to a week (Django's IntegerField messages); else ValueError."""
    try:
        minutes = int(text.strip())
    except ValueError:
        raise ValueError("Enter a whole number.") from None
    if minutes < 1:
        raise ValueError("Ensure this value is greater than or equal to 1.")
    if minutes > MAX_INTERVAL_MINUTES:
        raise ValueError(f"Ensure this value is less than or equal to {MAX_INTERVAL_MINUTES}.")
    return minutes


def parse_choice(text: str) -> str:
    """A choice setting's text, checked against what the region holds by :func:`_check_choice`."""
    return text.strip()


PARSERS: dict[str, Callable[[str], Any]] = {
    "boot_images_auto_import": parse_bool,
    "enable_http_proxy": parse_bool,
    "boot_images_no_proxy": parse_bool,
    "http_proxy": parse_proxy,
    "maas_name": parse_name,
    "default_osystem": parse_choice,
    "default_distro_series": parse_choice,
    "default_min_hwe_kernel": parse_choice,
    "commissioning_osystem": parse_choice,
    "commissioning_distro_series": parse_choice,
    "boot_images_import_interval_minutes": parse_interval,
}
# What MAAS calls the choice in its "'x' is not a valid <what>." message.
CHOICE_WORDS = {
    "default_osystem": "osystem",
    "default_distro_series": "release",
    "default_min_hwe_kernel": "default_min_hwe_kernel",
    "commissioning_osystem": "commissioning_osystem",
    "commissioning_distro_series": "commissioning_distro_series",
}
INTERVAL = "boot_images_import_interval_minutes"


async def _check_choice(db: Database, name: str, value: str) -> None:
    """MAAS's ChoiceField: a non-empty value must be one the region's images offer."""
    if name not in CHOICE_WORDS or (value == "" and name != "commissioning_osystem"):
        return
    choices = await setting_choices(db, name)
    if value not in choices:
        listed = ", ".join(f"'{c}'" for c in choices)
        raise ValidationError.field(
            name, f"'{value}' is not a valid {CHOICE_WORDS[name]}.  It should be one of: {listed}."
        )


def _loggable(value: Any) -> Any:
    """``value`` with the password of a proxy URL hidden."""
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
    return value


def _redacted(value: Any) -> Any:
    """``value`` with any user and password of a URL hidden (what non-admins read)."""
    if isinstance(value, str):
        parts = urlsplit(value)
        if "@" in parts.netloc:
            netloc = "***@" + parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=netloc))
    return value


def _known_name(name: str | None) -> str:
    if name is None or name == "":
        raise ValidationError.field("name", "No provided name!")
    if name not in PARSERS:
        raise ValidationError.field(  # MAAS keys it by the name asked for
            name,
            f"{name} is not a valid config setting (valid settings are: {', '.join(PARSERS)}).",
        )
    return name


async def get_config(request: web.Request) -> web.StreamResponse:
    """GET ?op=get_config&name=N: the value as JSON (credentials in URLs for admins only)."""
    user = require_user(request)
    name = _known_name(request.query.get("name"))
    ctx = request.app[CTX]
    if name == INTERVAL:  # never set: the config file's interval is the one in force
        value = await repo_config.get_config_or(ctx.db, name, ctx.config.import_interval_minutes)
    else:
        value = await repo_config.get_config(ctx.db, name)
    return json_response(value if user.is_admin else _redacted(value))


async def set_config(request: web.Request) -> web.StreamResponse:
    """POST op=set_config name=N value=V: store a value (admins only); 200 ``OK``."""
    user = require_admin(request, method_only=True)
    ctx = request.app[CTX]
    params = await read_params(request)
    name = _known_name(params.get("name"))
    text = params.get("value")
    if text is None:
        raise ValidationError.field("value", "No provided value!")
    try:
        value = PARSERS[name](text)
    except ValueError as exc:
        raise ValidationError.field(name, str(exc)) from None
    await _check_choice(ctx.db, name, value)
    previous = await repo_config.get_config(ctx.db, name)
    await repo_config.set_config(ctx.db, name, value)
    if name == INTERVAL and ctx.schedule is not None:
        ctx.schedule.set_interval(value)
    log.info(
        "config_changed",
        user=user.username,
        name=name,
        value=_loggable(value),
        previous=_loggable(previous),
    )
    if name in _PROXY_KEYS and value != previous:
        ctx.catalogue.schedule_refresh(reason=f"config_changed:{name}")
    return text_response("OK")


MAAS = HandlerSpec(
    "MaasHandler",
    "maas/",
    "Manage the MAAS server.",
    (
        Action(
            "GET",
            "get_config",
            get_config,
            "Get a configuration value.",
            (Param("name", "The name of the configuration item.", required=True),),
        ),
        Action(
            "POST",
            "set_config",
            set_config,
            "Set a configuration value.",
            (
                Param("name", "The name of the configuration item.", required=True),
                Param("value", "The value to set.", required=True),
            ),
        ),
    ),
)
HANDLERS = (MAAS,)
