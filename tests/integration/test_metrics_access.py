"""Who may read /metrics on the real region and rack apps: anyone by default, a token
holder once ``[metrics] token_file`` is set, nobody on the main port once ``listen`` moves it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient

from rack.app import build_app as build_rack_app
from rack.config import RackConfig
from region.config import RegionConfig
from tests.fakes.daemons import free_port
from tests.integration.region.rack_harness import build_region_app

TOKEN = "m3trics-t0ken"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def region_config(data_dir: Path, **changes: Any) -> RegionConfig:
    """A region without sources on ``data_dir``."""
    return RegionConfig(data_dir=data_dir, create_default_source=False, **changes)


def rack_config(data_dir: Path, **changes: Any) -> RackConfig:
    """A rack whose region is nowhere (it only has to serve /metrics here)."""
    return RackConfig(
        region_urls=(f"http://127.0.0.1:{free_port()}",),
        secret="s",
        data_dir=data_dir,
        listen="127.0.0.1:5248",
        hostname="r",
        **changes,
    )


async def test_the_region_lists_its_racks_to_anyone_by_default(
    data_dir: Path, aiohttp_client: AiohttpClient
) -> None:
    """As shipped, /metrics on the main port needs no credentials (documented exposure)."""
    client = await aiohttp_client(await build_region_app(region_config(data_dir)))
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert "# HELP bootsync_rack_connected" in await resp.text()


async def test_the_region_requires_the_token_once_one_is_configured(
    data_dir: Path, aiohttp_client: AiohttpClient
) -> None:
    """With a token: none or a wrong one is a plain 401 naming Bearer; the token gets 200."""
    client = await aiohttp_client(
        await build_region_app(region_config(data_dir, metrics_token=TOKEN))
    )
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert "bootsync_" not in await resp.text()
    resp = await client.get("/metrics", headers=BEARER)
    assert resp.status == 200
    assert "# HELP bootsync_rack_connected" in await resp.text()


async def test_the_region_main_port_has_no_metrics_once_they_listen_apart(
    data_dir: Path, aiohttp_client: AiohttpClient
) -> None:
    """``[metrics] listen`` set: the main app answers /metrics 404, token or not."""
    config = region_config(data_dir, metrics_listen=f"127.0.0.1:{free_port()}")
    client = await aiohttp_client(await build_region_app(config))
    assert (await client.get("/metrics", headers=BEARER)).status == 404
    assert (await client.get("/healthz")).status == 200


async def test_the_rack_requires_the_token_or_moves_metrics_off_its_main_port(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    """The rack's /metrics: 401 then 200 with a token; 404 once ``listen`` moves it."""
    client = await aiohttp_client(build_rack_app(rack_config(tmp_path / "a", metrics_token=TOKEN)))
    assert (await client.get("/metrics")).status == 401
    resp = await client.get("/metrics", headers=BEARER)
    assert resp.status == 200
    assert "bootsync_sync_state" in await resp.text()
    apart = rack_config(tmp_path / "b", metrics_listen=f"127.0.0.1:{free_port()}")
    client = await aiohttp_client(build_rack_app(apart))
    assert (await client.get("/metrics")).status == 404
