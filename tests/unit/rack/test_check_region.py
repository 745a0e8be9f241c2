"""``bootsync-rackd --check-config --check-region`` says before start whether the region will do."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.rackproto import REGISTER_PATH
from rack.main import main
from tests.fakes.daemons import free_port

ServerFactory = Callable[..., Any]
SECRET = "sesame"


class Region:
    """The registration endpoint of a region: 401 without the secret, 400 for a bad body."""

    def __init__(self) -> None:
        self.bodies: list[object] = []

    async def register(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {SECRET}":
            return web.Response(status=401, text="Authorization Error: wrong rack secret.")
        body = json.loads(await request.read())
        self.bodies.append(body)
        if not isinstance(body, dict) or not body.get("hostname"):
            return web.json_response({"hostname": ["must be a non-empty string"]}, status=400)
        return web.json_response(
            {"system_id": "x", "region_keyring": "A", "region_fingerprint": "F"}
        )


async def start(aiohttp_server: ServerFactory, routes: dict[str, Any]) -> str:
    """A server answering POST on each path of ``routes``; its base URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def check(tmp_path: Path, url: str, *, secret: str = SECRET) -> int:
    """Run the check for ``url`` in a worker thread (it runs its own event loop)."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n")
    argv = [
        "--check-config",
        "--check-region",
        "--region",
        url,
        "--secret-file",
        str(secret_file),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    return await asyncio.to_thread(main, argv)


async def test_a_region_that_takes_the_secret_passes_and_nothing_is_registered(
    aiohttp_server: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe is a registration the region must refuse (400): the secret is proved, no rack
    row is made; the URL as MAAS users type it is accepted."""
    region = Region()
    url = await start(aiohttp_server, {REGISTER_PATH: region.register})
    assert await check(tmp_path, url + "/MAAS/") == 0
    out = capsys.readouterr().out
    assert f"{url}: ok" in out
    assert region.bodies == [{}]


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("wrong_secret", "refused this rack's shared secret"),
        ("not_a_region", "HTTP 404"),
        ("nothing_listening", "cannot connect"),
        ("tls_to_plain_http", "TLS handshake failed"),
        ("accepts_anything", "not a bootsync region"),
    ],
)
async def test_a_region_that_will_not_do_is_reported_and_the_exit_code_is_2(
    aiohttp_server: ServerFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
    says: str,
) -> None:
    """Every problem the rack would meet at its first registration is printed before start."""
    region = Region()

    async def anything(_request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>welcome</html>", content_type="text/html")

    url = await start(aiohttp_server, {REGISTER_PATH: region.register, "/MAAS/x": anything})
    if where == "not_a_region":
        url = await start(aiohttp_server, {"/elsewhere": anything})
    elif where == "nothing_listening":
        url = f"http://127.0.0.1:{free_port()}"
    elif where == "tls_to_plain_http":
        url = url.replace("http://", "https://")
    elif where == "accepts_anything":
        url = await start(aiohttp_server, {REGISTER_PATH: anything})
    secret = "guess" if where == "wrong_secret" else SECRET
    assert await check(tmp_path, url, secret=secret) == 2
    err = capsys.readouterr().err
    assert url in err
    assert says in err
