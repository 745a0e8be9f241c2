"""``maas/?op=get_config|set_config`` reads and writes the image settings as MAAS does."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest

from region.db import config as repo_config
from tests.integration.region.api_harness import Region

Events = list[MutableMapping[str, Any]]
BOOLEAN_KEYS = ("boot_images_auto_import", "enable_http_proxy", "boot_images_no_proxy")


async def get(api_region: Region, name: str, **kwargs: Any) -> Any:
    """GET maas/?op=get_config&name=<name>."""
    return await api_region.call(
        "GET", "/maas/", query={"op": "get_config", "name": name}, **kwargs
    )


async def put(api_region: Region, name: str, value: str, **kwargs: Any) -> Any:
    """POST maas/?op=set_config with name and value (maascli style by default)."""
    return await api_region.call(
        "POST",
        "/maas/",
        query={"op": "set_config"},
        fields=[("name", name), ("value", value)],
        **kwargs,
    )


async def test_any_user_reads_the_defaults_as_json(api_region: Region) -> None:
    """A non-admin reads each key's default as a JSON value."""
    expected = {
        "boot_images_auto_import": True,
        "enable_http_proxy": True,
        "boot_images_no_proxy": False,
        "http_proxy": None,
    }
    for name, value in expected.items():
        resp = await get(api_region, name, key=api_region.user)
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("False", False), ("1", True), ("0", False), ("YES", True), ("no", False)],
)
async def test_booleans_accept_the_usual_spellings(
    api_region: Region, text: str, value: bool
) -> None:
    """true/false, 1/0 and yes/no in any case set a boolean key."""
    resp = await put(api_region, "boot_images_auto_import", text, style="libmaas")
    assert resp.status == 200
    assert await resp.text() == "OK"
    assert await repo_config.get_config(api_region.ctx.db, "boot_images_auto_import") is value
    assert await (await get(api_region, "boot_images_auto_import")).json() is value


async def test_a_value_that_is_not_a_boolean_is_refused(api_region: Region) -> None:
    """A 400 keyed by the config name, as MAAS keys its form errors."""
    for name in BOOLEAN_KEYS:
        resp = await put(api_region, name, "maybe")
        assert resp.status == 400
        errors = await resp.json()
        assert list(errors) == [name]
        assert "'maybe'" in errors[name][0]


async def test_http_proxy_takes_a_url_or_empty(api_region: Region, log_events: Events) -> None:
    """A proxy URL is stored; empty clears it; other text is not a valid URL."""
    good = await put(api_region, "http_proxy", "http://user:pw@proxy.example:3128/", style="form")
    stored = await repo_config.get_config(api_region.ctx.db, "http_proxy")
    cleared = await put(api_region, "http_proxy", "")
    bad = await put(api_region, "http_proxy", "proxy.example:3128")
    assert good.status == 200
    assert stored == "http://user:pw@proxy.example:3128/"
    assert cleared.status == 200
    assert await (await get(api_region, "http_proxy")).json() is None
    assert bad.status == 400
    assert await bad.json() == {"http_proxy": ["Enter a valid URL."]}
    logged = [e for e in log_events if e["event"] == "config_changed"]
    assert logged[0]["value"] == "http://user:***@proxy.example:3128/"
    assert "pw@" not in repr(log_events)


async def test_only_admins_read_the_proxy_credentials(api_region: Region) -> None:
    """A non-admin reads http_proxy with its user and password hidden; an admin reads it whole."""
    proxy = "http://squid-user:s3cr@t@proxy.example:3128/"
    assert (await put(api_region, "http_proxy", proxy)).status == 200
    seen_by_user = await get(api_region, "http_proxy", key=api_region.user)
    seen_by_admin = await get(api_region, "http_proxy")
    assert seen_by_user.status == 200
    assert await seen_by_user.json() == "http://***@proxy.example:3128/"
    assert "s3cr" not in await seen_by_user.text()
    assert "squid-user" not in await seen_by_user.text()
    assert await seen_by_admin.json() == proxy


async def test_proxy_changes_refresh_the_catalogue(api_region: Region, log_events: Events) -> None:
    """Changing a proxy key schedules a refresh; auto-import does not; no-op changes do not."""
    await put(api_region, "enable_http_proxy", "false")
    await put(api_region, "enable_http_proxy", "false")
    await put(api_region, "boot_images_auto_import", "false")
    assert api_region.catalogue.reasons == ["config_changed:enable_http_proxy"]
    changed = [e for e in log_events if e["event"] == "config_changed"]
    assert [(e["name"], e["user"]) for e in changed] == [
        ("enable_http_proxy", "admin"),
        ("enable_http_proxy", "admin"),
        ("boot_images_auto_import", "admin"),
    ]


async def test_unknown_or_missing_names_are_400_on_name(api_region: Region) -> None:
    """get and set refuse a name that is not a setting (keyed by it, as MAAS), and a missing name."""
    unknown_get = await get(api_region, "no_such_setting")
    unknown_set = await put(api_region, "no_such_setting", "x")
    missing = await api_region.call("GET", "/maas/", query={"op": "get_config"})
    for resp in (unknown_get, unknown_set):
        assert resp.status == 400
        message = (await resp.json())["no_such_setting"][0]
        assert message.startswith("no_such_setting is not a valid config setting")
    assert await missing.json() == {"name": ["No provided name!"]}


async def test_set_config_without_value_is_400(api_region: Region) -> None:
    """value is mandatory."""
    resp = await api_region.call(
        "POST", "/maas/", query={"op": "set_config"}, fields=[("name", "http_proxy")]
    )
    assert resp.status == 400
    assert await resp.json() == {"value": ["No provided value!"]}


async def test_only_admins_set_config(api_region: Region) -> None:
    """A non-admin gets MAAS's admin-method 403; nothing anonymous is allowed."""
    forbidden = await put(api_region, "boot_images_auto_import", "false", key=api_region.user)
    anonymous = await get(api_region, "http_proxy", key=None)
    assert forbidden.status == 403
    assert await forbidden.text() == "This method is reserved for admin users."
    assert anonymous.status == 401
    assert await repo_config.get_config(api_region.ctx.db, "boot_images_auto_import") is True


async def test_set_config_needs_post_and_get_config_needs_get(api_region: Region) -> None:
    """The op/method pairs MAAS does not have are 'Unrecognised signature' 400s."""
    resp = await api_region.call("GET", "/maas/", query={"op": "set_config", "name": "http_proxy"})
    assert resp.status == 400
    assert await resp.text() == "Unrecognised signature: method=GET op=set_config"
