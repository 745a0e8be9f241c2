"""The API sweep: every route of describe/ × every kind of caller × fuzzed parameters.

One region (the daemon's whole app, real database) serves the module. For each
handler describe/ lists, each of its actions is called as an anonymous caller,
with a wrong token secret, as a user and as an admin, once with plausible
arguments (existing ids) and several times with values drawn from the run's
seeded RNG: huge and negative numbers, unicode, empty and very long strings,
path tricks, for the URI placeholders and every parameter the action's doc
lists. Promised: no answer is a server error (5xx), and every 4xx says why (a
non-empty body). The handlers are those region/api/handlers.py declares; a
test checks describe/ lists exactly them, so a new handler joins the sweep.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from common.trust.keyrings import SigningKey
from region.api.handlers import HANDLERS
from region.api.http import API_ROOT
from region.db.users import ApiKey
from tests.fakes.streams import short_dir
from tests.integration.region.api_harness import maas_multipart, oauth_header
from tests.integration.region.rack_harness import RackRegion, start_region
from tests.reliability.plugin import seed_of, trial_count

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SWEPT = [h.name for h in HANDLERS if not h.hidden]
CI_FUZZED_CALLS = 6  # per action and caller, besides the plausible one (more with trials)
_PARAM_DOC = re.compile(r"^:param (\w+):", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

# Values a client may send where an id, a name, a number or a flag is expected.
NASTY = (
    "",
    " ",
    "0",
    "-1",
    str(10**30),
    str(-(10**30)),
    "9" * 400,
    "1.5",
    "1e309",
    "NaN",
    "true",
    "null",
    "[]",
    "{}",
    "ü☃🚀\u202e",
    "\ud800",
    "x" * 5000,
    "../../../etc/passwd",
    "%00",
    "'; DROP TABLE boot_sources; --",
    "http://",
    "amd64/generic",
    "ubuntu/noble",
)
# What a real client would send for each parameter (the plausible call); a source's
# url is the region's own (answering 404: refused at once, without retries).
PLAUSIBLE = {
    "keyring_filename": "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg",
    "name": "maas_name",
    "value": "sweep",
    "priority": "5",
    "enabled": "true",
    "skip_keyring_verification": "false",
    "os": "ubuntu",
    "release": "noble",
    "arches": "amd64",
    "subarches": "*",
    "labels": "*",
    "type": "synced",
    "force": "false",
    "architecture": "amd64/generic",
    "title": "sweep",
    "filetype": "tgz",
    "base_image": "ubuntu/noble",
    "keep_old": "false",
}


@dataclass
class Sweep:
    """The region, its keys, and ids of objects that exist."""

    region: RackRegion
    ids: dict[str, str]  # placeholder -> a value naming an existing object
    keyring: bytes

    @property
    def plausible(self) -> dict[str, str]:
        """:data:`PLAUSIBLE`, with a url that answers at once."""
        return PLAUSIBLE | {"url": str(self.region.client.make_url("/nowhere/"))}


@dataclass(frozen=True)
class Call:
    """One request the sweep sends, and what came back."""

    caller: str
    method: str
    path: str
    params: dict[str, str]
    status: int
    body: str

    def __str__(self) -> str:
        shown = {k: v[:40] for k, v in self.params.items()}
        return f"{self.caller}: {self.method} {self.path[:120]} {shown} -> {self.status} {self.body[:200]!r}"


async def _started_client(app: web.Application) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture(scope="module")
def keyring_bytes() -> Iterator[bytes]:
    """A real public keyring, for boot sources."""
    with (
        short_dir("bsa") as home,
        SigningKey.create(home / "g", name="sweep", email="s@test.invalid") as key,
    ):
        yield key.export_public()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sweep(keyring_bytes: bytes) -> AsyncIterator[Sweep]:
    """The daemon's app on a fresh data directory, with one object of each kind."""
    with short_dir("bsw") as data:
        region = await start_region(data, cast(AiohttpClient, _started_client))
        try:
            yield Sweep(region, await _objects(region, keyring_bytes), keyring_bytes)
        finally:
            await region.client.close()


async def _send(
    region: RackRegion,
    key: ApiKey | str | None,
    method: str,
    path: str,
    params: dict[str, str],
) -> tuple[int, str]:
    headers = {}
    if isinstance(key, ApiKey):
        headers["Authorization"] = oauth_header(key, realm=False)
    elif key is not None:
        headers["Authorization"] = key
    # A value that is no valid UTF-8 (a lone surrogate) is sent as the bytes a client
    # could send anyway.
    query = {k: v for k, v in params.items() if k == "op"}
    body: bytes | None = None
    fields = [(k, _raw(v)) for k, v in params.items() if k != "op"]
    if method in ("POST", "PUT"):
        body, headers["Content-Type"] = maas_multipart(fields)
    else:
        query |= {k: v.decode("utf-8", "surrogatepass") for k, v in fields}
    encoded = "&".join(f"{quote(k)}={quote(_raw(v), safe='')}" for k, v in query.items())
    url = API_ROOT + path + (f"?{encoded}" if encoded else "")
    async with region.client.request(method, url, data=body, headers=headers) as resp:
        return resp.status, await resp.text(errors="replace")


def _raw(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


async def _objects(region: RackRegion, keyring: bytes) -> dict[str, str]:
    """Create a boot source, a selection, an uploaded resource and a rack; their ids."""
    source = await _create_source(region, keyring)
    status, text = await _send(
        region,
        region.admin,
        "POST",
        f"/boot-sources/{source}/selections/",
        {"os": "ubuntu", "release": "noble", "arches": "amd64", "subarches": "*", "labels": "*"},
    )
    assert status in (200, 201), text
    selection = _json_id(text)
    resource = await _upload(region, f"custom/sweep-{source}")
    rack = await region.register(f"sweep-rack-{source}")
    return {
        "id": "",
        "boot_source_id": str(source),
        "source": str(source),
        "selection": str(selection),
        "resource": str(resource),
        "system_id": rack["system_id"],
        "file_id": "1",
    }


_SOURCES = itertools.count(1)


async def _create_source(region: RackRegion, keyring: bytes) -> int:
    url = f"http://127.0.0.1:9/sweep-{next(_SOURCES)}/"  # a source's URL is unique
    body, ctype = maas_multipart([("url", url), ("keyring_data", keyring, "keyring.gpg")])
    async with region.client.post(
        API_ROOT + "/boot-sources/",
        data=body,
        headers={"Authorization": oauth_header(region.admin, realm=False), "Content-Type": ctype},
    ) as resp:
        text = await resp.text()
        assert resp.status in (200, 201), text
        return _json_id(text)


async def _upload(region: RackRegion, name: str) -> int:
    content = b"\x1f\x8b" + bytes(1022)
    body, ctype = maas_multipart(
        [
            ("name", name),
            ("architecture", "amd64/generic"),
            ("title", "sweep"),
            ("filetype", "tgz"),
            ("base_image", "ubuntu/noble"),
            ("content", content, "root.tgz"),
        ]
    )
    async with region.client.post(
        API_ROOT + "/boot-resources/",
        data=body,
        headers={"Authorization": oauth_header(region.admin, realm=False), "Content-Type": ctype},
    ) as resp:
        text = await resp.text()
        assert resp.status in (200, 201), text
        return _json_id(text)


def _json_id(text: str) -> int:
    import json  # noqa: PLC0415

    return int(json.loads(text)["id"])


def _valid(handler: str, placeholder: str, ids: dict[str, str]) -> str:
    """An existing object's id for ``placeholder`` of ``handler``."""
    if placeholder == "id":
        if handler.startswith("BootSourceSelection"):
            return ids["selection"]
        if handler.startswith("BootResource"):
            return ids["resource"]
        return ids["source"]
    return ids[placeholder]


def _callers(sweep: Sweep) -> dict[str, ApiKey | str | None]:
    admin = sweep.region.admin
    wrong = (
        f'OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", '
        f'oauth_consumer_key="{admin.consumer_key}", oauth_token="{admin.token_key}", '
        f'oauth_signature="%26not-the-secret", oauth_nonce="1", oauth_timestamp="1"'
    )
    return {"anonymous": None, "wrong secret": wrong, "user": sweep.region.user, "admin": admin}


def _calls(
    rng: random.Random,
    spec_path: str,
    params: list[str],
    handler: str,
    *,
    ids: dict[str, str],
    fuzzed_calls: int,
    plausible: dict[str, str],
) -> Iterator[tuple[str, dict[str, str]]]:
    """(path, params) of the plausible call, then of the fuzzed ones."""
    holders = _PLACEHOLDER.findall(spec_path)

    def path_with(values: dict[str, str]) -> str:
        return "/" + _PLACEHOLDER.sub(lambda m: quote(_raw(values[m[1]]), safe=""), spec_path)

    yield (
        path_with({h: _valid(handler, h, ids) for h in holders}),
        {p: plausible[p] for p in params if p in plausible},
    )
    for _ in range(fuzzed_calls):
        values = {h: rng.choice((_valid(handler, h, ids), *NASTY)) or "0" for h in holders}
        fuzzed = {p: rng.choice(NASTY) for p in params if rng.random() < 0.8}
        yield path_with(values), fuzzed


async def _sweep_handler(
    sweep: Sweep, name: str, rng: random.Random, fuzzed_calls: int
) -> list[Call]:
    """Every action of handler ``name`` × every caller × plausible and fuzzed arguments.

    Objects are made afresh first: an earlier handler's sweep may have deleted them.
    """
    sweep.ids = await _objects(sweep.region, sweep.keyring)
    status, text = await _send(sweep.region, None, "GET", "/describe/", {})
    assert status == 200, text
    import json  # noqa: PLC0415

    [handler] = [h for h in json.loads(text)["handlers"] if h["name"] == name]
    spec_path = handler["path"].removeprefix(API_ROOT + "/")
    calls: list[Call] = []
    # Deleting goes last: the other actions still find the objects.
    actions = sorted(handler["actions"], key=lambda a: a["method"] == "DELETE")
    for action in actions:
        params = _PARAM_DOC.findall(action["doc"])
        for caller, key in _callers(sweep).items():
            for path, fuzzed in _calls(
                rng,
                spec_path,
                params,
                name,
                ids=sweep.ids,
                fuzzed_calls=fuzzed_calls,
                plausible=sweep.plausible,
            ):
                sent = dict(fuzzed)
                if action["op"]:
                    sent["op"] = action["op"]
                status, body = await _send(sweep.region, key, action["method"], path, sent)
                calls.append(Call(caller, action["method"], path, sent, status, body))
    return calls


async def test_describe_lists_exactly_the_handlers_the_sweep_covers(sweep: Sweep) -> None:
    """describe/ names the handlers region/api/handlers.py declares (none is left unswept)."""
    import json  # noqa: PLC0415

    status, text = await _send(sweep.region, None, "GET", "/describe/", {})
    assert status == 200, text
    assert sorted(h["name"] for h in json.loads(text)["handlers"]) == sorted(SWEPT)


@pytest.mark.parametrize("handler", SWEPT)
async def test_no_caller_and_no_argument_gets_a_server_error(
    sweep: Sweep, handler: str, request: pytest.FixtureRequest
) -> None:
    """Every action × caller × argument answers below 500, and a 4xx says why."""
    seed = seed_of(request.config)
    print(f"reliability seed {seed}, handler {handler}")
    fuzzed = CI_FUZZED_CALLS * max(1, trial_count(request.config, ci=1))
    calls = await _sweep_handler(sweep, handler, random.Random(f"{seed}:{handler}"), fuzzed)
    server_errors = [str(c) for c in calls if c.status >= 500]
    silent = [str(c) for c in calls if 400 <= c.status < 500 and not c.body.strip()]
    statuses = sorted({c.status for c in calls})
    print(f"{handler}: {len(calls)} calls, statuses {statuses}")
    assert not server_errors, "\n".join(server_errors)
    assert not silent, "\n".join(silent)
