"""The cluster wired into the region daemon's app: [cluster] config, /healthz, /metrics.

The database is a PostgreSQL server of the test's own (tests/fakes/postgres.py),
so that it can be stopped under the running region.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from common.errors import ConfigError
from region.app import build_app
from region.cluster.identity import RegionIdentity
from region.config import RegionConfig, load_config
from region.context import CTX
from region.images.publish import SIGNED_INDEX_PATH
from region.web import STREAM_PREFIX
from tests.fakes.postgres import PostgresServer, pg_bin
from tests.fakes.waiting import eventually

Events = list[MutableMapping[str, Any]]


def write(path: Path, text: str) -> Path:
    """``text`` written to ``path``."""
    path.write_text(text)
    return path


def test_cluster_settings_default_to_the_host_and_come_from_file_or_environment(
    tmp_path: Path,
) -> None:
    """Name and URL default to the host name and port; the file and BOOTSYNC_* set them."""
    defaults = load_config(None)
    me = RegionIdentity.from_config(defaults, hostname="host1")
    assert me == RegionIdentity("host1", "http://host1:5240", 10.0, 30.0)
    assert RegionIdentity.from_config(defaults).name == socket.gethostname()
    path = write(
        tmp_path / "r.toml",
        '[cluster]\nname = "region-a"\nurl = "https://a.example:5443"\nheartbeat_seconds = 2\n',
    )
    config = load_config(path, environ={"BOOTSYNC_REGIOND_CLUSTER_LEASE_SECONDS": "9"})
    assert RegionIdentity.from_config(config) == RegionIdentity(
        "region-a", "https://a.example:5443", 2.0, 9.0
    )
    from_env = load_config(
        None,
        environ={
            "BOOTSYNC_REGIOND_CLUSTER_NAME": "region-b",
            "BOOTSYNC_REGIOND_CLUSTER_URL": "http://b:1",
            "BOOTSYNC_REGIOND_CLUSTER_HEARTBEAT_SECONDS": "3",
        },
    )
    assert (from_env.cluster_name, from_env.cluster_url, from_env.heartbeat_seconds) == (
        "region-b",
        "http://b:1",
        3,
    )


def test_bad_cluster_settings_are_reported_with_their_keys(tmp_path: Path) -> None:
    """A bad name, URL, heartbeat and a lease shorter than two heartbeats are all named."""
    path = write(
        tmp_path / "r.toml",
        '[cluster]\nname = "a b"\nurl = "ftp://x"\nheartbeat_seconds = 0\n',
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    text = str(raised.value)
    for problem in (
        "cluster.name: must be 1 to 63 letters",
        "cluster.url: must be an http:// or https:// URL",
        "cluster.heartbeat_seconds: must be a whole number from 1 to 3600, got 0",
    ):
        assert problem in text
    short = write(tmp_path / "s.toml", "[cluster]\nheartbeat_seconds = 10\nlease_seconds = 15\n")
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "cluster.lease_seconds: must be at least twice cluster.heartbeat_seconds (10), got 15"
        ),
    ):
        load_config(short)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own (it stops it); stopped and removed after."""
    if pg_bin("initdb") is None:
        pytest.fail("initdb is missing: run `make postgresql-tools`")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def sample(text: str, name: str, labels: str = "") -> float | None:
    """The value of metric ``name{labels}`` in a Prometheus exposition, or None."""
    match = re.search(rf"(?m)^{re.escape(name + labels)} (\S+)$", text)
    return float(match[1]) if match else None


async def test_healthz_is_503_without_the_database_and_files_are_still_served(
    own_postgres: PostgresServer, data_dir: Path, aiohttp_client: Any, log_events: Events
) -> None:
    """Stopping PostgreSQL: /healthz answers 503 naming it, /metrics says so, files still serve."""
    url = await own_postgres.new_database()
    config = RegionConfig(
        data_dir=data_dir,
        database_url=url,
        create_default_source=False,
        cluster_name="region-a",
        heartbeat_seconds=1,
        lease_seconds=3,
    )
    app = await build_app(config)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    ctx = app[CTX]

    async def settled() -> bool:
        return await ctx.publisher.current_id() is not None and not ctx.importer.is_importing()

    await eventually(settled, "the start-up import")
    assert ctx.cluster is not None
    assert (ctx.cluster.name, ctx.cluster.url) == (
        "region-a",
        "http://" + socket.gethostname() + ":5240",
    )
    ready = await client.get("/healthz")
    assert ready.status == 200
    before = await (await client.get("/metrics")).text()
    assert sample(before, "bootsync_database_up") == 1.0
    assert sample(before, "bootsync_region_live", '{region="region-a"}') == 1.0
    assert sample(before, "bootsync_import_lease_held") == 0.0

    await asyncio.to_thread(own_postgres.stop)

    async def unhealthy() -> bool:
        return (await client.get("/healthz")).status == 503

    await eventually(unhealthy, "/healthz answering 503", timeout=15, pause=0.2)
    body = await (await client.get("/healthz")).json()
    served = await client.get(f"{STREAM_PREFIX}/{SIGNED_INDEX_PATH}")
    after = await (await client.get("/metrics")).text()
    assert body["ready"] is False
    assert body["reason"].startswith("database unreachable: ")
    assert served.status == 200
    assert b"BEGIN PGP SIGNED MESSAGE" in await served.read()
    assert sample(after, "bootsync_database_up") == 0.0
    assert any(e["event"] == "database_unreachable" for e in log_events)
