"""The API answers from the last committed state while an import's transaction is open.

An import writes its wanted sets in one transaction (``repo_import.write_wanted``).
Here that real write is held part-way (its writer thread waits inside a statement
trace) while the API is asked about the images: it must not see the half-written
import, and it must see all of it once the transaction commits.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from region.api import boot_resources
from region.api.auth import auth_middleware
from region.api.http import API_ROOT, maas_errors
from region.api.registry import add_routes
from region.context import CTX
from region.db import imports as repo_import
from region.db import resources as repo_resources
from region.db.connection import Database
from region.db.engine import SqliteConnection
from region.db.imports import WantedFile, WantedSet
from region.db.users import ApiKey
from tests.integration.region.api_harness import Region, oauth_header

OLD, NEW = "20250101", "20250201"


class HoldWriter:
    """A statement trace that stops the writer at the first statement containing ``marker``.

    It runs on the writer's thread, so the event loop (and the readers) go on.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, marker: str) -> None:
        self.loop = loop
        self.marker = marker
        self.reached = asyncio.Event()
        self.release = threading.Event()
        self.held = False

    def __call__(self, statement: str) -> None:
        if self.held or self.marker not in statement:
            return
        self.held = True
        self.loop.call_soon_threadsafe(self.reached.set)
        self.release.wait(timeout=30)


def wanted(name: str, version: str, sha256: str) -> WantedSet:
    """A synced image with one squashfs of 10 bytes."""
    return WantedSet(
        name=name,
        architecture="amd64/generic",
        kflavor="generic",
        bootloader_type=None,
        rolling=False,
        extra={"title": name},
        version=version,
        label="stable",
        files=(WantedFile("squashfs", "squashfs", sha256, 10),),
    )


async def get(client: TestClient[Any, Any], key: ApiKey, path: str) -> Any:
    """GET ``path`` of the MAAS API as ``key``; the JSON body of a 200."""
    resp: aiohttp.ClientResponse = await client.get(
        API_ROOT + path, headers={"Authorization": oauth_header(key, realm=False)}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def names(db: Database) -> list[str]:
    """The resources ``list_resources`` gives (what GET boot-resources/ lists)."""
    return [r.name for r, _totals in await repo_resources.list_resources(db)]


# SQLite only: the test holds the writer through SQLite's trace hook.
@pytest.mark.parametrize("api_region", ["sqlite"], indirect=True)
async def test_an_api_read_during_an_import_transaction_sees_the_last_committed_state(
    api_region: Region, aiohttp_client: AiohttpClient
) -> None:
    """Mid-import the API shows the committed images only; after the commit it shows the new."""
    db = api_region.ctx.db
    app = web.Application(middlewares=[maas_errors, auth_middleware])
    app[CTX] = api_region.ctx
    add_routes(app, boot_resources.HANDLERS)
    client = await aiohttp_client(app)
    await repo_import.write_wanted(db, [wanted("ubuntu/noble", OLD, "a" * 64)], {"a" * 64: 10})
    (noble,) = await get(client, api_region.user, "/boot-resources/")

    # The next import adds a new (empty) set to noble, then creates jammy: hold it there.
    hold = HoldWriter(asyncio.get_running_loop(), "INSERT INTO boot_resources (")
    async with db.write() as conn:
        assert isinstance(conn, SqliteConnection)  # a SQLite-only test hook
        await conn.set_trace_callback(hold)
    importing = asyncio.create_task(
        repo_import.write_wanted(
            db, [wanted("ubuntu/noble", NEW, "b" * 64), wanted("ubuntu/jammy", NEW, "c" * 64)], {}
        )
    )
    try:
        await asyncio.wait_for(hold.reached.wait(), timeout=10)
        during_names = await names(db)
        during_list = await get(client, api_region.user, "/boot-resources/")
        during_noble = await get(client, api_region.user, f"/boot-resources/{noble['id']}/")
    finally:
        hold.release.set()
    created = await importing
    after_names = await names(db)
    after_list = await get(client, api_region.user, "/boot-resources/")
    after_noble = await get(client, api_region.user, f"/boot-resources/{noble['id']}/")

    assert noble["status"] == "Synced"
    assert during_names == ["ubuntu/noble"]
    assert during_list == [noble]
    assert list(during_noble["sets"]) == [OLD]
    assert created == {("ubuntu/jammy", "amd64/generic")}
    assert sorted(after_names) == ["ubuntu/jammy", "ubuntu/noble"]
    assert sorted(r["name"] for r in after_list) == ["ubuntu/jammy", "ubuntu/noble"]
    assert list(after_noble["sets"]) == [NEW, OLD]
    assert after_noble["status"] != "Synced"
