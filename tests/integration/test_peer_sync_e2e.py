"""Peer sync between two real ``bootsync-regiond`` processes on one real PostgreSQL.

One region imports from the fake upstream at start; the other fetches the blobs
from it over the peer route and publishes the same stream. Upstream sends each
image file once, and the peer route refuses a request without the cluster's token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.mirror.samplestream import SampleStream
from region.cluster.peer_wire import PEER_TOKEN_HEADER, peer_blob_url
from region.cluster.secrets import PEER_TOKEN, read_secret
from region.db.connection import open_db
from region.images.publish import PRODUCTS_PATH
from tests.fakes.daemons import DaemonProcess, free_port
from tests.fakes.postgres import PostgresServer
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually
from tests.integration.region.import_harness import item_paths

pytestmark = pytest.mark.slow

NAMES = ("region-a", "region-b")


def region_process(
    name: str,
    work: Path,
    data_dir: Path,
    *,
    database_url: str,
    upstream: FakeUpstream,
    keyring: Path,
) -> DaemonProcess:
    """``bootsync-regiond`` called ``name`` on a free port and the shared database (not started)."""
    port = free_port()
    config = work / f"{name}.toml"
    config.write_text(
        "[import]\n"
        f'default_source_url = "{upstream.url("/")}"\n'
        f'default_keyring = "{keyring}"\n'
        "[cluster]\n"
        f'name = "{name}"\n'
        f'url = "http://127.0.0.1:{port}"\n'
        "heartbeat_seconds = 1\n"
        "lease_seconds = 3\n"
        '[log]\nformat = "json"\nlevel = "debug"\n'
    )
    return DaemonProcess(
        "region",
        ["--config", str(config), "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
        log_path=work / f"{name}.log",
        port=port,
        env={"BOOTSYNC_REGIOND_DATABASE_URL": database_url},
    )


async def products(region: DaemonProcess) -> dict[str, Any]:
    """The products of the stream ``region`` publishes ({} before it publishes one)."""
    url = f"{region.url}/MAAS/images-stream/{PRODUCTS_PATH}"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        if resp.status != 200:
            return {}
        doc: dict[str, Any] = json.loads(await resp.read())
    return dict(doc.get("products", {}))


@pytest.fixture
async def regions(
    postgres_server: PostgresServer,
    fake_upstream: FakeUpstream,
    stream: SampleStream,
    data_dir: Path,
    tmp_path: Path,
) -> AsyncIterator[tuple[dict[str, DaemonProcess], str]]:
    """Regions A and B started on a fresh database (one of them imports at start), and its URL."""
    fake_upstream.serve_directory(stream.root)
    url = await postgres_server.new_database()
    made = {
        name: region_process(
            name,
            tmp_path,
            data_dir / name,
            database_url=url,
            upstream=fake_upstream,
            keyring=stream.keyring,
        )
        for name in NAMES
    }
    try:
        for region in made.values():
            await region.start()
        yield made, url
    finally:
        for region in made.values():
            if region.proc is not None:
                await region.stop()


async def test_the_region_that_did_not_import_fetches_from_the_one_that_did(
    regions: tuple[dict[str, DaemonProcess], str], fake_upstream: FakeUpstream, stream: SampleStream
) -> None:
    """Both regions publish the same images; upstream sent each file once; the other region
    fetched them from its peer (peer_sync_finished), whose route wants the cluster's token."""
    daemons, database = regions

    async def same_images() -> bool:
        a, b = [await products(d) for d in daemons.values()]
        return bool(a) and a.keys() == b.keys()

    # Well within the 60 s fallback: the cluster events bring the fetch.
    await eventually(same_images, "the same images on both regions", timeout=30, pause=0.3)
    fetched = {
        name: sum(e["fetched"] for e in d.events("peer_sync_finished"))
        for name, d in daemons.items()
    }
    assert sorted(fetched.values())[0] == 0  # the importer fetched nothing from its peer
    assert sorted(fetched.values())[1] > 0  # the other took every blob from it
    for path in set(item_paths(fake_upstream)):  # each image file came from upstream once
        size = (stream.root / path.lstrip("/")).stat().st_size
        assert fake_upstream.served_bytes(path) == size, path

    async with open_db(database, readers=1) as db:
        token = await read_secret(db, PEER_TOKEN)
    assert token
    item = next(
        i
        for p in (await products(daemons["region-a"])).values()
        for v in p["versions"].values()
        for i in v["items"].values()
    )
    async with aiohttp.ClientSession() as session:
        for region in daemons.values():
            url = peer_blob_url(region.url, item["sha256"])
            async with session.head(url) as resp:
                assert resp.status == 401
            async with session.head(url, headers={PEER_TOKEN_HEADER: token}) as resp:
                assert resp.status == 200
                assert resp.content_length == item["size"]
