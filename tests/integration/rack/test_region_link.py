"""The rack's region link against a FakeRegion and a real region: no silent failure, no death."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from rack.app import RACK, RackContext, build_app, open_rack
from rack.main import main
from tests.fakes.daemons import DaemonProcess, bootsync
from tests.fakes.region import FakeRegion
from tests.fakes.waiting import eventually
from tests.integration.rack.harness import rack_config

pytestmark = pytest.mark.slow

INDEX = "streams/v1/index.sjson"
ClientFactory = Callable[..., Any]


def named(log: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    """The captured log events called ``name``."""
    return [e for e in log if e["event"] == name]


async def test_an_endless_event_line_is_logged_and_the_link_reconnects_and_hears_events_again(
    fake_region: FakeRegion,
    tmp_path: Path,
    aiohttp_client: ClientFactory,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """The region's first event stream sends a line that never ends: the rack hangs up, says
    so once, reconnects with backoff, and a later snapshot event makes it poll; the link task
    never dies."""
    fake_region.flood_events(times=1)
    client: TestClient[Any, Any] = await aiohttp_client(
        build_app(rack_config(fake_region, tmp_path / "rack"))
    )
    rack: RackContext = client.app[RACK]
    await eventually(lambda: fake_region.hung_up_on_flood == 1, "the rack hanging up", timeout=30)
    refused = named(log_events, "region_event_stream_refused")
    assert len(refused) == 1, refused
    assert refused[0]["log_level"] == "warning"
    assert "event line over" in refused[0]["error"]
    await eventually(lambda: len(fake_region.registrations) >= 2, "a re-registration", timeout=30)
    await eventually(
        lambda: not rack.loop.running and fake_region.announce("snapshot") == 1,
        "the rack listening again",
        timeout=30,
    )
    await eventually(lambda: named(log_events, "region_event"), "the snapshot event heard")
    assert named(log_events, "region_event")[-1]["region_event"] == "snapshot"
    assert not named(log_events, "rack_task_crashed")
    assert not any(task.done() for task in rack.tasks)
    assert fake_region.floods_sent == 1


async def test_a_region_url_typed_as_maas_users_do_registers(
    fake_region: FakeRegion, tmp_path: Path, log_events: list[MutableMapping[str, Any]]
) -> None:
    """``--region http://host:5240/MAAS/`` reaches …/MAAS/rack/v1/register, not …/MAAS/MAAS/…."""
    config = rack_config(fake_region, tmp_path / "rack", region_urls=(fake_region.url + "/MAAS/",))
    async with open_rack(config) as rack:
        await rack.link.register_once()
    assert rack.link.state == "connected"
    assert len(fake_region.registrations) == 1
    assert not named(log_events, "registration_failed")


async def test_check_region_passes_against_a_real_region_and_registers_nothing(
    region: DaemonProcess, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--check-config --check-region`` with the real region's secret and …/MAAS/ exits 0;
    with a wrong secret it exits 2 naming the refusal; no rack is registered by either."""
    secret_file = tmp_path / "rack-secret"
    secret_file.write_text(await bootsync("rack-secret", "--data-dir", str(data_dir)) + "\n")
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("guess\n")

    def check(secret: Path) -> int:
        return main(
            [
                "--check-config",
                "--check-region",
                "--region",
                region.url + "/MAAS/",
                "--secret-file",
                str(secret),
                "--data-dir",
                str(tmp_path / "rack"),
            ]
        )

    assert await asyncio.to_thread(check, secret_file) == 0
    assert f"{region.url}: ok" in capsys.readouterr().out
    assert await asyncio.to_thread(check, wrong) == 2
    assert "refused this rack's shared secret" in capsys.readouterr().err
    assert not region.events("rack_registered")
    await eventually(lambda: len(region.events("rack_auth_failed")) == 1, "the refusal logged")
