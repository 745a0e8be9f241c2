"""describe/, version/ and whoami answer as python-libmaas and the maas CLI need them to."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web

from common.cli.maascli_commands import handler_command_name
from region.api import users
from region.api.describe import API_HASH
from region.api.handlers import HANDLERS
from region.api.http import API_ROOT, dispatch_table, json_response
from region.api.registry import (
    Action,
    HandlerSpec,
    add_routes,
    api_hash,
    described_actions,
    registry_problems,
    routed_actions,
)
from region.config import shipped_keyring
from region.db.users import ApiKey
from tests.integration.region.api_harness import maas_multipart, oauth_header
from tests.integration.region.rack_harness import RackRegion

DESCRIBE = f"{API_ROOT}/describe/"
MAAS_HANDLERS = {
    "BootSourcesHandler",
    "BootSourceHandler",
    "BootSourceSelectionsHandler",
    "BootSourceSelectionHandler",
    "BootResourcesHandler",
    "BootResourceHandler",
    "RackControllersHandler",
    "RackControllerHandler",
    "MaasHandler",
    "UsersHandler",
    "VersionHandler",
}


async def describe(region: RackRegion, **headers: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The describe document (fetched anonymously) and the response headers."""
    resp = await region.client.get(DESCRIBE, headers=headers)
    assert resp.status == 200
    return await resp.json(), dict(resp.headers)


def libmaas_attribute(name: str) -> str:
    """python-libmaas's name for a handler: no ``Anon`` prefix, no ``Handler`` suffix."""
    name = name.removeprefix("Anon").removesuffix("Handler")
    return name.replace("Maas", "MAAS")


async def test_describe_is_anonymous_exact_json_with_the_header_hash(region: RackRegion) -> None:
    """describe/ answers 200 unsigned, Content-Type exactly application/json, hash = header."""
    doc, headers = await describe(region)
    assert headers["Content-Type"] == "application/json"
    assert set(doc) == {"doc", "hash", "resources", "handlers"}
    assert doc["hash"] == headers["X-MAAS-API-Hash"] == region.app[API_HASH]
    assert re.fullmatch(r"[0-9a-f]{40}", doc["hash"])


async def test_resources_are_maas_handler_classes_with_both_anon_and_auth_keys(
    region: RackRegion,
) -> None:
    """Every resource has anon and auth keys; version is anonymous, the rest need a key."""
    doc, _ = await describe(region)
    names = [r["name"] for r in doc["resources"]]
    assert names == sorted(names)
    assert set(names) == MAAS_HANDLERS
    for resource in doc["resources"]:
        assert {"name", "anon", "auth"} <= set(resource)
        anonymous = resource["name"] == "VersionHandler"
        handler = resource["anon"] if anonymous else resource["auth"]
        assert resource["auth" if anonymous else "anon"] is None
        assert handler["name"] == resource["name"]
    anon = [r["anon"] for r in doc["resources"] if r["anon"]]
    auth = [r["auth"] for r in doc["resources"] if r["auth"]]
    assert doc["handlers"] == anon + auth


async def test_handlers_have_path_params_and_a_uri_built_from_the_host_header(
    region: RackRegion,
) -> None:
    """path is the absolute template, params its placeholders in order, uri scheme+Host+path."""
    doc, _ = await describe(region, Host="region.example:5240")
    for handler in doc["handlers"]:
        assert {"name", "doc", "path", "params", "uri", "actions"} <= set(handler)
        assert handler["path"].startswith(f"{API_ROOT}/")
        assert handler["path"].endswith("/")
        assert handler["params"] == re.findall(r"\{(\w+)\}", handler["path"])
        assert handler["uri"] == f"http://region.example:5240{handler['path']}"
        assert isinstance(handler["doc"], str)
    by_name = {h["name"]: h for h in doc["handlers"]}
    assert (
        by_name["BootSourceSelectionHandler"]["path"]
        == f"{API_ROOT}/boot-sources/{{boot_source_id}}/selections/{{id}}/"
    )
    assert by_name["BootSourceSelectionHandler"]["params"] == ["boot_source_id", "id"]
    assert (
        by_name["BootSourceHandler"]["uri"].format(id=3)
        == "http://region.example:5240/MAAS/api/2.0/boot-sources/3/"
    )


async def test_actions_are_sorted_with_crud_names_ops_and_restful_flags(region: RackRegion) -> None:
    """Actions are name-sorted; CRUD ones are named by method with op null and restful true."""
    doc, _ = await describe(region)
    crud = {"GET": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}
    for handler in doc["handlers"]:
        names = [a["name"] for a in handler["actions"]]
        assert names == sorted(names)
        for action in handler["actions"]:
            assert set(action) == {"name", "method", "op", "restful", "doc"}
            assert action["restful"] is (action["op"] is None)
            assert action["name"] == (action["op"] or crud[action["method"]])
    resources = {h["name"]: h for h in doc["handlers"]}["BootResourcesHandler"]
    assert {(a["name"], a["method"], a["op"]) for a in resources["actions"]} == {
        ("read", "GET", None),
        ("create", "POST", None),
        ("import", "POST", "import"),
        ("is_importing", "GET", "is_importing"),
        ("stop_import", "POST", "stop_import"),
    }


async def test_action_docs_list_every_parameter_after_the_first_paragraph(
    region: RackRegion,
) -> None:
    """:param lines follow the one-line summary; create/update list the fields they read."""
    doc, _ = await describe(region)
    params: dict[tuple[str, str], list[str]] = {}
    for handler in doc["handlers"]:
        for action in handler["actions"]:
            summary, _, rest = action["doc"].partition("\n\n")
            assert summary
            assert ":param" not in summary
            params[handler["name"], action["name"]] = re.findall(r"^:param (\w+):", rest, re.M)
    source_fields = [
        "url",
        "keyring_filename",
        "keyring_data",
        "name",
        "priority",
        "enabled",
        "skip_keyring_verification",
    ]
    assert params["BootSourcesHandler", "create"] == source_fields
    assert params["BootSourcesHandler", "fetch"] == source_fields
    assert params["BootSourceHandler", "update"] == source_fields
    assert params["BootSourceSelectionsHandler", "create"] == [
        "os",
        "release",
        "arches",
        "subarches",
        "labels",
    ]
    assert params["BootSourceSelectionHandler", "update"] == [
        "os",
        "release",
        "arches",
        "subarches",
        "labels",
    ]
    assert set(params["BootResourcesHandler", "create"]) >= {
        "name",
        "architecture",
        "title",
        "filetype",
        "base_image",
        "content",
        "sha256",
        "size",
    }
    assert params["BootResourcesHandler", "read"] == ["type"]
    assert params["MaasHandler", "set_config"] == ["name", "value"]
    assert params["BootSourceHandler", "read"] == []
    assert params["BootResourceHandler", "delete"] == []


async def test_every_routed_api_action_is_described_and_every_described_one_routed(
    region: RackRegion,
) -> None:
    """The registry and the routes agree on every (path, method, op): nothing bypasses it."""
    assert registry_problems(region.app, HANDLERS) == []
    assert routed_actions(region.app) == described_actions(HANDLERS)


async def test_each_route_dispatches_to_the_coroutine_its_action_declares(
    region: RackRegion,
) -> None:
    """Every API path's dispatcher maps each (method, op) to the declared coroutine."""
    tables = {
        r.resource.canonical: dispatch_table(r.handler)
        for r in region.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith(API_ROOT + "/")
    }
    for spec in HANDLERS:
        assert tables[spec.full_path] == {(a.method, a.op): a.handler for a in spec.actions}
    assert region.app[API_HASH] == api_hash(HANDLERS)


async def _teapot(request: web.Request) -> web.StreamResponse:
    return json_response({}, status=418)


def test_a_handler_declaring_one_action_name_twice_is_refused() -> None:
    """Two actions with one name (a clash for the clients' commands) raise ValueError."""
    with pytest.raises(ValueError, match="TeapotHandler: action names used twice: brew"):
        HandlerSpec(
            "TeapotHandler",
            "teapot/",
            "A teapot.",
            (Action("GET", "brew", _teapot, "Brew."), Action("POST", "brew", _teapot, "Brew.")),
        )


def test_registry_problems_names_a_route_added_around_the_declaration() -> None:
    """A route added with app.router directly, and a declared handler left unrouted, are named."""
    app = web.Application()
    add_routes(app, users.HANDLERS)
    app.router.add_get(f"{API_ROOT}/teapot/", _teapot, allow_head=False)
    unrouted = HandlerSpec(
        "TeapotHandler", "pot/", "A pot.", (Action("PUT", None, _teapot, "Fill."),)
    )
    assert registry_problems(app, [*users.HANDLERS, unrouted]) == [
        f"routed but not in the registry: GET {API_ROOT}/teapot/ op=None",
        f"in the registry but not routed: PUT {API_ROOT}/pot/ op=None",
    ]


async def test_the_upload_handler_is_routed_but_hidden_from_describe(region: RackRegion) -> None:
    """PUT boot-resources/{id}/upload/{file_id}/ exists; describe leaves it out, as MAAS does."""
    doc, _ = await describe(region)
    assert all("upload" not in h["path"] for h in doc["handlers"])
    assert (f"{API_ROOT}/boot-resources/{{id}}/upload/{{file_id}}/", "PUT", None) in routed_actions(
        region.app
    )


async def test_clients_derive_maas_command_and_attribute_names(region: RackRegion) -> None:
    """maascli's command names and libmaas's attribute names come out as for MAAS."""
    doc, _ = await describe(region)
    commands = {handler_command_name(r["name"]) for r in doc["resources"]}
    assert commands >= {
        "boot-sources",
        "boot-source",
        "boot-source-selections",
        "boot-source-selection",
        "boot-resources",
        "boot-resource",
        "rack-controllers",
        "rack-controller",
        "maas",
        "users",
        "version",
    }
    attributes = {libmaas_attribute(r["name"]) for r in doc["resources"]}
    assert attributes >= {
        "BootSources",
        "BootSource",
        "BootSourceSelections",
        "BootSourceSelection",
        "BootResources",
        "BootResource",
        "MAAS",
        "Users",
        "Version",
    }


async def test_version_is_anonymous_with_a_strict_version_number(region: RackRegion) -> None:
    """version/ answers {version, subversion, capabilities} without a key; X.Y.Z parses."""
    resp = await region.client.get(f"{API_ROOT}/version/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    body = await resp.json()
    assert set(body) == {"version", "subversion", "capabilities"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"])
    assert "authenticate-api" in body["capabilities"]  # region/ui/accounts.py serves it


async def test_whoami_answers_the_keys_user_and_401_for_a_bad_or_missing_key(
    region: RackRegion,
) -> None:
    """users/?op=whoami: 200 with username/email/is_superuser; 401 otherwise."""
    resp = await region.api("GET", "/users/", op="whoami")
    assert resp.status == 200
    body = await resp.json()
    assert body["username"] == "admin"
    assert body["is_superuser"] is True
    assert "email" in body
    bad = ApiKey(region.admin.consumer_key, region.admin.token_key, "wrong")
    resp = await region.client.get(
        f"{API_ROOT}/users/",
        params={"op": "whoami"},
        headers={"Authorization": oauth_header(bad, realm=False)},
    )
    assert resp.status == 401
    resp = await region.client.get(f"{API_ROOT}/users/", params={"op": "whoami"})
    assert resp.status == 401


def _fill(path: str) -> str:
    return path.format(id="999", boot_source_id="999", system_id="abc123", file_id="999")


async def test_every_response_carries_the_api_hash_and_a_content_type(region: RackRegion) -> None:
    """Each described action, signed and anonymous, 204s and router 404s included."""
    doc, _ = await describe(region)
    expected = doc["hash"]
    seen: set[int] = set()

    async def check(
        method: str,
        path: str,
        *,
        signed: bool = True,
        op: str | None = None,
        body: tuple[bytes, str] | None = None,
    ) -> int:
        headers = {"Authorization": oauth_header(region.admin, realm=False)} if signed else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = body
        resp = await region.client.request(
            method, path, headers=headers, data=data, params={"op": op} if op else None
        )
        await resp.read()
        assert resp.headers.get("X-MAAS-API-Hash") == expected, (method, path, resp.status)
        assert resp.headers.get("Content-Type"), (method, path, resp.status)
        seen.add(resp.status)
        return resp.status

    for handler in doc["handlers"]:
        for action in handler["actions"]:
            if action["op"] in ("import", "import_boot_images"):
                continue  # would start work in the background; covered elsewhere
            path = _fill(handler["path"])
            await check(action["method"], path, op=action["op"])
            await check(action["method"], path, op=action["op"], signed=False)
    await check("PATCH", f"{API_ROOT}/boot-sources/")
    await check("GET", f"{API_ROOT}/no-such-thing/")
    await check("GET", DESCRIBE, signed=False)

    created = maas_multipart(
        [("url", "http://mirror.example/streams/"), ("keyring_filename", str(shipped_keyring()))]
    )
    assert await check("POST", f"{API_ROOT}/boot-sources/", body=created) == 201
    sources = await (await region.api("GET", "/boot-sources/")).json()
    assert await check("DELETE", f"{API_ROOT}/boot-sources/{sources[0]['id']}/") == 204
    assert {200, 201, 204, 400, 401, 404} <= seen
