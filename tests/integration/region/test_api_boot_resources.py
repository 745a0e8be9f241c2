"""The boot-resources API and available_images over a real import: MAAS's shapes, our fixes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from common.mirror.samplestream import SampleStream
from common.trust.keyrings import SigningKey
from region.api import boot_resources, boot_sources
from region.api.auth import auth_middleware
from region.api.http import API_ROOT, api_hash_middleware, maas_errors
from region.api.registry import add_routes
from region.config import RegionConfig
from region.context import CTX, RegionContext
from region.db import resources as repo_resources
from region.db import sources as repo_sources
from region.db.connection import Database
from region.db.engine import SqliteConnection
from region.db.sources import BootSource
from region.db.users import ApiKey
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually
from tests.integration.region.api_harness import make_key, oauth_header
from tests.integration.region.import_harness import (
    ImportEnv,
    import_env,
    resign_index,
    sample_stream,
)

KERNEL = "noble/amd64/20250718/ga-24.04/generic/boot-kernel"
NOT_ADMIN = "This method is reserved for admin users."


@dataclass
class Api:
    """A running region API over a real import environment."""

    client: TestClient[Any, Any]
    env: ImportEnv
    admin: ApiKey
    user: ApiKey
    source: BootSource
    upstream: FakeUpstream
    stream: SampleStream
    upstream_key: SigningKey

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: ApiKey | str | None = "admin",
        query: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Send a request as the maas CLI does (no body), as ``key`` (None: anonymous)."""
        api_key = self.admin if key == "admin" else key
        headers = (
            {}
            if not isinstance(api_key, ApiKey)
            else {"Authorization": oauth_header(api_key, realm=False)}
        )
        return await self.client.request(method, API_ROOT + path, params=query, headers=headers)

    async def json(self, path: str, **query: str) -> Any:
        """GET ``path`` as a plain user; the JSON body of a 200."""
        resp = await self.call("GET", path, key=self.user, query=query or None)
        assert resp.status == 200, await resp.text()
        return await resp.json()


def build_app(ctx: RegionContext) -> web.Application:
    """The middlewares as the daemon stacks them, with boot-resources and boot-sources."""
    app = web.Application(middlewares=[api_hash_middleware("0" * 40), maas_errors, auth_middleware])
    app[CTX] = ctx
    add_routes(app, [*boot_resources.HANDLERS, *boot_sources.HANDLERS])
    return app


@pytest.fixture
async def api(
    tmp_path: Path,
    region_key: SigningKey,
    upstream_key: SigningKey,
    fake_upstream: FakeUpstream,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Api]:
    """A region API whose source serves a sample stream; nothing imported yet."""
    stream: SampleStream = await asyncio.to_thread(sample_stream, tmp_path / "up", upstream_key)
    fake_upstream.serve_directory(stream.root)
    async with import_env(tmp_path / "region", region_key) as env:
        ctx = RegionContext(
            data_dir=env.root,
            db=env.db,
            session=env.session,
            store=env.store,
            publisher=env.publisher,
            region_key=region_key,
            importer=env.importer,
            catalogue=env.catalogue,
            config=RegionConfig(data_dir=env.root),
        )
        admin = await make_key(ctx, "admin", admin=True)
        user = await make_key(ctx, "alice", admin=False)
        source = await env.add_source(fake_upstream, stream)
        client = await aiohttp_client(build_app(ctx))
        yield Api(
            client=client,
            env=env,
            admin=admin,
            user=user,
            source=source,
            upstream=fake_upstream,
            stream=stream,
            upstream_key=upstream_key,
        )


async def test_read_lists_images_in_maas_shape_with_a_status(api: Api) -> None:
    """After an import every image is listed, ordered by name, with MAAS's keys and Synced."""
    await api.env.importer.run_import("test")
    listed = await api.json("/boot-resources/")
    names = [(r["name"], r["architecture"]) for r in listed]
    assert names == sorted(names)
    noble = next(r for r in listed if r["architecture"] == "amd64/ga-24.04")
    assert noble == {
        "id": noble["id"],
        "type": "Synced",
        "name": "ubuntu/noble",
        "architecture": "amd64/ga-24.04",
        "resource_uri": f"{API_ROOT}/boot-resources/{noble['id']}/",
        "last_deployed": None,
        "subarches": "generic,hwe-p,hwe-q,hwe-r,hwe-s,hwe-t,hwe-u,hwe-v,hwe-w,ga-24.04",
        "title": "Ubuntu 24.04 LTS",
        "status": "Synced",
    }
    assert {r["status"] for r in listed} == {"Synced"}


async def test_the_type_filter_selects_and_a_bad_type_is_refused_with_maas_words(api: Api) -> None:
    """type=synced lists everything imported, type=uploaded nothing, type=bogus is a 400."""
    await api.env.importer.run_import("test")
    assert len(await api.json("/boot-resources/", type="synced")) == 6
    assert await api.json("/boot-resources/", type="uploaded") == []
    resp = await api.call("GET", "/boot-resources/", key=api.user, query={"type": "bogus"})
    assert resp.status == 400
    assert await resp.text() == (
        "'bogus' is not a valid boot resource type. Available types: "
        "['synced', 'generated', 'uploaded']"
    )


async def test_read_one_gives_sets_and_files_without_progress_once_complete(api: Api) -> None:
    """A complete resource shows its set and files with sha256, size and complete=true."""
    await api.env.importer.run_import("test")
    listed = await api.json("/boot-resources/")
    rid = next(r["id"] for r in listed if r["architecture"] == "amd64/ga-24.04")
    detail = await api.json(f"/boot-resources/{rid}/")
    (version,) = detail["sets"]
    one_set = detail["sets"][version]
    assert version == "20250718"
    assert set(one_set) == {"version", "label", "size", "complete", "files"}
    assert one_set["complete"] is True
    assert one_set["size"] == sum(f["size"] for f in one_set["files"].values())
    assert set(one_set["files"]) == {"boot-kernel", "boot-initrd", "squashfs"}
    kernel = one_set["files"]["boot-kernel"]
    assert set(kernel) == {"filename", "filetype", "sha256", "size", "complete"}
    assert len(kernel["sha256"]) == 64


async def test_progress_and_status_are_visible_while_a_file_downloads(api: Api) -> None:
    """While the kernel stalls half-way, its file, set and image show the bytes held so far."""
    api.upstream.stall(KERNEL, after_bytes=8192, seconds=1)
    assert api.env.importer.start(reason="test")

    async def kernel_progress() -> bool:
        listed = await api.json("/boot-resources/")
        return any(r["status"].startswith("Downloading") for r in listed)

    await eventually(kernel_progress)
    listed = await api.json("/boot-resources/")
    ga = next(r for r in listed if r["architecture"] == "amd64/ga-24.04")
    detail = await api.json(f"/boot-resources/{ga['id']}/")
    one_set = detail["sets"]["20250718"]
    kernel = one_set["files"]["boot-kernel"]
    importing = await api.json("/boot-resources/", op="is_importing")
    await eventually(lambda: _idle(api))
    assert importing is True
    assert detail["status"] == f"Downloading {one_set['progress']:3.0f}%"
    assert kernel["complete"] is False
    assert 0 < kernel["progress"] < 100
    assert 0 < one_set["progress"] < 100
    assert one_set["complete"] is False


async def _idle(api: Api) -> bool:
    return not api.env.importer.is_importing()


async def test_import_and_stop_import_answer_maas_text_and_need_an_admin(api: Api) -> None:
    """op=import starts, op=stop_import stops (200 texts); other users get 403, nobody 401."""
    api.upstream.stall(KERNEL, after_bytes=8192, seconds=1)
    forbidden = await api.call("POST", "/boot-resources/", key=api.user, query={"op": "import"})
    anonymous = await api.call("POST", "/boot-resources/", key=None, query={"op": "import"})
    started = await api.call("POST", "/boot-resources/", query={"op": "import"})
    importing = await api.json("/boot-resources/", op="is_importing")
    stopped = await api.call("POST", "/boot-resources/", query={"op": "stop_import"})
    after = await api.json("/boot-resources/", op="is_importing")
    assert (forbidden.status, await forbidden.text()) == (403, NOT_ADMIN)
    assert anonymous.status == 401
    assert (started.status, await started.text()) == (200, "Import of boot resources started")
    assert (stopped.status, await stopped.text()) == (
        200,
        "Import of boot resources is being stopped",
    )
    assert importing is True
    assert after is False


async def test_import_with_force_accepts_an_index_the_rollback_guard_refuses(api: Api) -> None:
    """An older index fails a plain op=import and passes op=import with force=true."""
    await api.env.importer.run_import("first")
    await asyncio.to_thread(
        resign_index, api.stream, api.upstream_key, updated="Mon, 01 Jan 2024 00:00:00 +0000"
    )
    outcomes = []
    for query in ({"op": "import"}, {"op": "import", "force": "true"}):
        resp = await api.call("POST", "/boot-resources/", query=query)
        assert resp.status == 200
        await eventually(lambda: _idle(api))
        async with (
            api.env.db.read() as conn,
            conn.execute("SELECT outcome FROM import_runs ORDER BY id DESC") as cur,
        ):
            outcomes.append((await cur.fetchone())[0])  # type: ignore[index]
    assert outcomes == ["failed", "ok"]


async def test_deleting_an_image_answers_204_and_unknown_ids_404(api: Api) -> None:
    """DELETE removes the image (and its stream entry); unknown or malformed ids are 404."""
    await api.env.importer.run_import("test")
    listed = await api.json("/boot-resources/")
    rid = next(r["id"] for r in listed if r["architecture"] == "amd64/ga-24.04")
    by_user = await api.call("DELETE", f"/boot-resources/{rid}/", key=api.user)
    deleted = await api.call("DELETE", f"/boot-resources/{rid}/")
    gone = await api.call("GET", f"/boot-resources/{rid}/", key=api.user)
    again = await api.call("DELETE", f"/boot-resources/{rid}/")
    malformed = await api.call("GET", "/boot-resources/x/", key=api.user)
    products = (
        api.env.root
        / "stream"
        / "current"
        / "streams"
        / "v1"
        / "com.bootsync.region:v1:download.json"
    ).read_text()
    assert by_user.status == 403
    assert deleted.status == 204
    assert (gone.status, await gone.text()) == (404, "No BootResource matches the given query.")
    assert again.status == 404
    assert malformed.status == 404
    assert "maas:boot:ubuntu:amd64:ga-24.04:noble" not in products
    assert "maas:boot:ubuntu:amd64:hwe-24.04:noble" in products


async def test_available_images_shows_the_catalogue_and_the_last_error(
    api: Api, gpg_keyring_path: Path
) -> None:
    """A good source lists what it offers; a source signed by a stranger shows its error."""
    await api.env.catalogue.refresh_all()
    good = await api.call(
        "GET", f"/boot-sources/{api.source.id}/", query={"op": "available_images"}
    )
    body = await good.json()
    bad = await repo_sources.create_source(
        api.env.db, url=api.upstream.url("/other/"), keyring_filename=str(gpg_keyring_path)
    )
    await api.env.catalogue.refresh_all()
    failed = await (
        await api.call("GET", f"/boot-sources/{bad.id}/", query={"op": "available_images"})
    ).json()
    by_user = await api.call(
        "GET", f"/boot-sources/{bad.id}/", key=api.user, query={"op": "available_images"}
    )
    unknown = await api.call("GET", "/boot-sources/999/", query={"op": "available_images"})
    assert good.status == 200
    assert body["last_error"] is None
    assert body["warnings"] == []
    assert {
        "os": "ubuntu",
        "arch": "amd64",
        "subarch": "ga-24.04",
        "release": "noble",
        "label": "stable",
        "kflavor": "generic",
        "bootloader_type": None,
        "release_codename": "Noble Numbat",
        "release_title": "24.04 LTS",
        "support_eol": "2029-05-31",
        "title": "Ubuntu 24.04 LTS",
    } in body["images"]
    assert failed["images"] == []
    assert failed["last_error"].startswith(f"Failed to import images from {bad.url}")
    assert by_user.status == 403
    assert unknown.status == 404


async def test_reading_a_thousand_images_takes_one_query(api: Api) -> None:
    """Listing 1,000 images runs a single SELECT (no query per image)."""
    now = "2025-01-01T00:00:00"
    async with api.env.db.write() as conn:
        await conn.executemany(
            "INSERT INTO boot_resources (rtype, name, architecture, extra, created, updated) "
            "VALUES (0, ?, 'amd64/generic', '{}', ?, ?)",
            [(f"custom/image{i:04d}", now, now) for i in range(1000)],
        )
        await conn.execute(
            "INSERT INTO boot_resource_sets (resource_id, version, label, created) "
            "SELECT id, '20250101', 'stable', ? FROM boot_resources",
            (now,),
        )
        await conn.execute(
            "INSERT INTO boot_resource_files (set_id, filename, filetype, sha256, size, "
            "bytes_done) SELECT id, 'root-tgz', 'root-tgz', ?, 100, 50 FROM boot_resource_sets",
            ("a" * 64,),
        )
    statements: list[str] = []
    await _trace_readers(api.env.db, statements.append)
    listed = await api.json("/boot-resources/")
    await _trace_readers(api.env.db, lambda _statement: None)
    reads = [s for s in statements if "boot_resource" in s]
    assert len(listed) == 1000
    assert {r["status"] for r in listed} == {"Downloading  50%"}
    assert len(reads) == 1
    assert len(await repo_resources.list_resources(api.env.db)) == 1000


async def _trace_readers(db: Database, callback: Callable[[str], object]) -> None:
    """Make ``callback`` the statement trace of every reader connection of ``db``."""
    async with AsyncExitStack() as stack:
        for _ in range(db.readers):
            conn = await stack.enter_async_context(db.read())
            assert isinstance(conn, SqliteConnection)  # a SQLite-only test hook
            await conn.set_trace_callback(callback)
