"""GET boot-resources/ on both engines: every list entry is its resource's detail without sets.

The list is rendered by a fast path of its own (one narrow query, ``extra``
decoded once per distinct text, rack status computed once per image); these
tests pin it to the detail answer (``boot-resources/{id}/``), which renders one
resource the straightforward way, over a population that reaches every branch:
the three types, images with no set, with an incomplete newest set over a
complete older one, with a set without files, with and without ``base_image``,
with API extras and region-only extras.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from common.storage.blobstore import BlobStore
from common.storage.snapshot import SnapshotPublisher
from common.trust.keyrings import SigningKey
from region.api import boot_resources
from region.api.auth import auth_middleware
from region.api.http import API_ROOT, api_hash_middleware, maas_errors
from region.api.registry import add_routes
from region.config import RegionConfig
from region.context import CTX, RegionContext
from region.db import resources as repo_resources
from region.db.connection import Database, open_db
from region.db.imports import WantedFile, WantedSet, write_wanted
from region.db.resources import atomic
from region.db.users import ApiKey
from region.rackhub.state import RackSyncSummary
from tests.fakes.postgres import PostgresServer
from tests.integration.region.api_harness import (
    IdleImporter,
    RecordingCatalogue,
    make_key,
    oauth_header,
)

NOW = "2025-01-01T00:00:00"


def _wanted(name: str, arch: str, version: str, extra: Mapping[str, Any], seed: str) -> WantedSet:
    return WantedSet(
        name=name,
        architecture=arch,
        kflavor="generic",
        bootloader_type=None,
        rolling=False,
        extra=extra,
        version=version,
        label="stable",
        files=tuple(
            WantedFile(filename=f, filetype=f, sha256=(seed + f).ljust(64, "0")[:64], size=s)
            for f, s in (("boot-kernel", 1000), ("boot-initrd", 3000), ("squashfs", 7000))
        ),
    )


async def populate(db: Database) -> None:
    """Resources reaching every branch of the list's rendering (see the module docstring)."""
    synced = [
        _wanted(
            f"ubuntu/rel{i:02d}",
            f"{arch}/{sub}",
            "20250101",
            {"subarches": f"generic,{sub}", "title": f"Ubuntu {i}", "release": f"rel{i:02d}"},
            f"{i:02d}{arch}{sub}",
        )
        for i in range(6)
        for arch, sub in (("amd64", "ga-24.04"), ("arm64", "generic"))
    ]
    synced.append(
        _wanted(
            "grub-efi-signed/uefi",
            "amd64/generic",
            "20250101",
            {"platform": "uefi", "supported_platforms": ["uefi", "pc"], "note": "x"},
            "grub",
        )
    )
    synced.append(_wanted("ubuntu/bare", "amd64/generic", "20250101", {}, "bare"))
    have = {f.sha256: f.size for ws in synced for f in ws.files}
    # rel00 amd64 downloads half of its squashfs; rel01's newer set has nothing yet.
    have[synced[0].files[2].sha256] = 3500
    await write_wanted(db, synced, have)
    newer = _wanted("ubuntu/rel01", "amd64/ga-24.04", "20250202", synced[2].extra, "new")
    await write_wanted(db, [newer], {})

    async def others(conn: Any) -> None:
        await conn.executemany(
            "INSERT INTO boot_resources (rtype, name, architecture, base_image, extra, "
            "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (2, "custom/mine", "amd64/generic", "ubuntu/noble", '{"title": "Mine"}', NOW, NOW),
                (2, "custom/empty", "arm64/generic", "", "{}", NOW, NOW),
                (1, "ubuntu/gen", "amd64/generic", "", '{"subarches": "generic"}', NOW, NOW),
                (0, "ubuntu/noset", "ppc64el/generic", "", '{"title": "No set"}', NOW, NOW),
            ],
        )
        async with conn.execute("SELECT id FROM boot_resources WHERE name = 'custom/empty'") as cur:
            (empty_id,) = await cur.fetchone()
        await conn.execute(
            "INSERT INTO boot_resource_sets (resource_id, version, label, created) "
            "VALUES (?, '20250101', 'uploaded', ?)",
            (empty_id, NOW),
        )

    await atomic(db, others)


@dataclass
class Served:
    """A populated region database behind the boot-resources handlers."""

    client: TestClient[Any, Any]
    db: Database
    user: ApiKey

    async def get(self, path: str, **query: str) -> bytes:
        """The body of a 200 answer to GET ``path`` as a plain user."""
        resp = await self.client.get(
            API_ROOT + path,
            params=query or None,
            headers={"Authorization": oauth_header(self.user, realm=False)},
        )
        assert resp.status == 200, await resp.text()
        return await resp.read()


@pytest.fixture(params=["sqlite", "postgresql"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """A fresh database on each engine: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "region.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return await server.new_database()


@pytest.fixture
async def served(
    target: str | Path, tmp_path: Path, region_key: SigningKey, aiohttp_client: AiohttpClient
) -> AsyncIterator[Served]:
    """The boot-resources handlers over a populated database on the test's engine."""
    store = BlobStore(tmp_path / "blobs")
    async with open_db(target) as db, aiohttp.ClientSession() as session:
        await populate(db)
        ctx = RegionContext(
            data_dir=tmp_path,
            db=db,
            session=session,
            store=store,
            publisher=SnapshotPublisher(tmp_path / "stream", store),
            region_key=region_key,
            importer=IdleImporter(),
            catalogue=RecordingCatalogue(),
            config=RegionConfig(data_dir=tmp_path),
        )
        user = await make_key(ctx, "alice", admin=False)
        app = web.Application(
            middlewares=[api_hash_middleware("0" * 40), maas_errors, auth_middleware]
        )
        app[CTX] = ctx
        add_routes(app, list(boot_resources.HANDLERS))
        yield Served(client=await aiohttp_client(app), db=db, user=user)


async def test_every_list_entry_is_the_detail_without_its_sets(served: Served) -> None:
    """Each entry of the list equals its resource's detail answer with ``sets`` removed."""
    listed = json.loads(await served.get("/boot-resources/"))
    assert len(listed) == 18
    for entry in listed:
        detail = json.loads(await served.get(f"/boot-resources/{entry['id']}/"))
        del detail["sets"]
        assert entry == detail
    statuses = {e["name"] + " " + e["architecture"]: e["status"] for e in listed}
    assert statuses["ubuntu/rel00 amd64/ga-24.04"] == "Downloading  68%"
    assert statuses["ubuntu/rel01 amd64/ga-24.04"] == "Queued for download"
    assert statuses["ubuntu/noset ppc64el/generic"] == "Queued for download"
    assert statuses["ubuntu/rel02 arm64/generic"] == "Synced"


async def test_the_list_is_ordered_and_filtered_by_type_as_before(served: Served) -> None:
    """Entries come by type, name, architecture; each type filter keeps that order's subset."""
    listed = json.loads(await served.get("/boot-resources/"))
    order = {"Synced": 0, "Generated": 1, "Uploaded": 2}
    keys = [(order[e["type"]], e["name"], e["architecture"]) for e in listed]
    assert keys == sorted(keys)
    for name, label in (("synced", "Synced"), ("generated", "Generated"), ("uploaded", "Uploaded")):
        subset = json.loads(await served.get("/boot-resources/", type=name))
        assert subset == [e for e in listed if e["type"] == label]
    body = await served.get("/boot-resources/")
    assert body == json.dumps(listed).encode()


async def test_the_list_renders_rack_and_region_status_as_one_resource_does(
    served: Served,
) -> None:
    """With racks and lagging regions, the fast list rendering equals render_resource's."""
    holdings = {("ubuntu/rel02", "amd64"): frozenset({"ga-24.04"})}
    summaries = [
        RackSyncSummary(racks=0, serving_current=0, rack_import_running=False, holdings=()),
        RackSyncSummary(
            racks=2, serving_current=1, rack_import_running=True, holdings=(holdings, {})
        ),
        RackSyncSummary(
            racks=1, serving_current=1, rack_import_running=False, holdings=(holdings,)
        ),
    ]
    listed = await repo_resources.list_resources(served.db)
    rows = await repo_resources.list_rows(served.db)
    lacking = {listed[3][0].id: ["region-b"], listed[0][0].id: ["region-c"]}
    for racks in summaries:
        fast = boot_resources.render_list(rows, racks, lacking)
        slow = [
            boot_resources.render_resource(r, t, racks, lacking.get(r.id, ())) for r, t in listed
        ]
        assert json.dumps(fast) == json.dumps(slow)
    assert {e["status"] for e in fast} >= {
        "Synced",  # ubuntu/rel02 amd64/ga-24.04, the one image the rack holds
        "Waiting for rack controller(s) to sync",
        "Syncing to region controller(s)",
    }
