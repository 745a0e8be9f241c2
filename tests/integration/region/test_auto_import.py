"""The hourly auto-import follows boot_images_auto_import, switched at run time via the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from region.app import AUTO_IMPORT, build_app
from region.config import RegionConfig
from region.context import CTX
from region.db import users as repo_users
from region.db.users import ApiKey
from tests.fakes.waiting import eventually
from tests.integration.region.api_harness import oauth_header

API = "/MAAS/api/2.0"


async def test_switching_auto_import_off_and_on_takes_effect_without_a_restart(
    aiohttp_client: Any, data_dir: Path, log_events: list[Any]
) -> None:
    """A tick after set_config false skips the import; after true it starts one."""
    app = await build_app(RegionConfig(data_dir=data_dir, create_default_source=False))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    ctx = app[CTX]
    user = await repo_users.create_user(ctx.db, "admin", is_admin=True)
    key = ApiKey(*await repo_users.create_token(ctx.db, user.id))
    headers = {"Authorization": oauth_header(key, realm=True)}
    scheduler = app[AUTO_IMPORT]
    # The start-up run (it claims the cluster's slot first): nothing to import without sources.
    await eventually(lambda: any(e["event"] == "import_finished" for e in log_events))
    await ctx.importer.wait_idle()

    resp = await client.post(
        f"{API}/maas/",
        data={"op": "set_config", "name": "boot_images_auto_import", "value": "false"},
        headers=headers,
    )
    assert resp.status == 200
    assert await scheduler.tick() is False
    assert any(e["event"] == "auto_import_skipped" for e in log_events)

    resp = await client.post(
        f"{API}/maas/",
        data={"op": "set_config", "name": "boot_images_auto_import", "value": "true"},
        headers=headers,
    )
    assert resp.status == 200
    assert await scheduler.tick() is True
    await ctx.importer.stop()


async def test_auto_import_is_scheduled_to_run_at_start_and_then_every_interval(
    aiohttp_client: Any, data_dir: Path
) -> None:
    """The job's interval is the configured one and its first run is due at start-up."""
    app = await build_app(
        RegionConfig(data_dir=data_dir, create_default_source=False, import_interval_minutes=17)
    )
    await aiohttp_client(app)
    job = app[AUTO_IMPORT].job()
    assert job.trigger.interval.total_seconds() == 17 * 60
    assert job.max_instances == 1
    assert job.coalesce is True
