"""``bootsync db copy``: a populated SQLite region copied to a real PostgreSQL server.

The source is a region after a real import (tests/integration/region/import_harness.py)
with users, keys, a web password and session, a registered rack with its credential,
config, an HTTP cache entry and cluster rows; the target is a fresh database of the
session's PostgreSQL server (tests/fakes/postgres.py). The region's API is served
over each database with the same blob store and must answer alike.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from common.rackproto import Registration
from common.storage.blobstore import BlobStore
from common.storage.snapshot import SnapshotPublisher
from common.transfer.fetch import CachedDocument
from common.trust.keyrings import SigningKey
from region.api import boot_resources, boot_sources, selections
from region.api.auth import auth_middleware
from region.api.http import API_ROOT, api_hash_middleware, maas_errors
from region.api.registry import add_routes
from region.config import RegionConfig
from region.context import CTX, RegionContext
from region.db import config as repo_config
from region.db import http_cache, web_auth
from region.db import racks as repo_racks
from region.db import sources as repo_sources
from region.db import users as repo_users
from region.db.connection import Database, open_db
from region.db.copy import (
    NoSourceError,
    SchemaMismatchError,
    TargetNotEmptyError,
    copy_database,
    count,
    tables,
)
from region.db.users import ApiKey
from tests.fakes.postgres import PostgresServer
from tests.integration.region.api_harness import IdleImporter, RecordingCatalogue, oauth_header
from tests.integration.region.import_harness import Scene, import_env

REPO = Path(__file__).resolve().parents[3]
Events = list[dict[str, Any]]


@dataclass
class Populated:
    """A region's SQLite database after an import, and what the test made in it."""

    path: Path
    store: Path
    admin: ApiKey
    user: ApiKey
    deleted_source_id: int  # the largest boot-source id ever given: deleted, never to come back


async def _populate(db: Database, deleted_url: str) -> tuple[ApiKey, ApiKey, int]:
    """Users, keys, a password and session, a rack, config, cache and cluster rows."""
    admin = await repo_users.create_user(db, "admin", email="a@example.invalid", is_admin=True)
    user = await repo_users.create_user(db, "alice", email="b@example.invalid", is_admin=False)
    admin_key = ApiKey(*await repo_users.create_token(db, admin.id))
    user_key = ApiKey(*await repo_users.create_token(db, user.id))
    await web_auth.set_password(db, admin.id, "correct horse battery")
    await web_auth.create_session(db, admin.id)
    rack, _new = await repo_racks.register_rack(db, Registration("rack1", "http://10.0.0.5:5248"))
    assert await repo_racks.issue_credential(db, rack.system_id)
    await repo_config.set_config(db, "maas_name", "copied-region")
    await http_cache.put_document(db, "http://upstream.invalid/streams/v1/index.sjson", CACHED)
    async with db.write() as conn:
        cur = await conn.execute(
            "INSERT INTO regions (name, url, started_at, last_seen) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            ("region-a", "http://region-a:5240", "2026-01-01T00:00:00", "2026-01-01T00:00:00"),
        )
        await conn.execute(
            "INSERT INTO region_blobs (region_id, sha256) VALUES (?, ?)", (cur.lastrowid, "a" * 64)
        )
        await conn.execute(
            "INSERT INTO cluster_secrets (name, value, created) VALUES (?, ?, ?)",
            ("peer_token", "s3cret", "2026-01-01T00:00:00"),
        )
    gone = await repo_sources.create_source(db, url=deleted_url)
    assert await repo_sources.delete_source(db, gone.id)
    return admin_key, user_key, gone.id


CACHED = CachedDocument(
    body=b"cached index", etag='"e1"', last_modified="Thu, 01 Jan 2026 00:00:00 GMT"
)


@pytest.fixture
async def populated(scene: Scene) -> Populated:
    """The scene's region after one real import, with users, keys, a rack and more."""
    async with import_env(scene.root, scene.region_key) as env:
        await env.add_source(scene.upstream, scene.stream)
        summary = await env.importer.run_import("test")
        assert summary.outcome == "ok", summary.errors
        admin, user, deleted = await _populate(env.db, scene.upstream.url("/gone/"))
    return Populated(scene.root / "region.db", scene.root / "store", admin, user, deleted)


def _app(ctx: RegionContext) -> web.Application:
    app = web.Application(middlewares=[api_hash_middleware("0" * 40), maas_errors, auth_middleware])
    app[CTX] = ctx
    add_routes(app, [*boot_resources.HANDLERS, *boot_sources.HANDLERS, *selections.HANDLERS])
    return app


@asynccontextmanager
async def serving(
    target: Path | str, root: Path, key: SigningKey, aiohttp_client: AiohttpClient
) -> AsyncIterator[Callable[[str, ApiKey], Any]]:
    """The region API over the database ``target`` and the store under ``root``; a GET."""
    store = BlobStore(root / "store")
    async with open_db(target) as db, aiohttp.ClientSession() as session:
        ctx = RegionContext(
            data_dir=root,
            db=db,
            session=session,
            store=store,
            publisher=SnapshotPublisher(root / "stream", store),
            region_key=key,
            importer=IdleImporter(),
            catalogue=RecordingCatalogue(),
            config=RegionConfig(data_dir=root),
        )
        client = await aiohttp_client(_app(ctx))

        async def get(path: str, as_key: ApiKey) -> Any:
            headers = {"Authorization": oauth_header(as_key, realm=False)}
            resp = await client.get(API_ROOT + path, headers=headers)
            assert resp.status == 200, await resp.text()
            return await resp.json()

        yield get
        await client.close()


async def answers(
    target: Path | str, populated: Populated, scene: Scene, aiohttp_client: AiohttpClient
) -> dict[str, Any]:
    """What boot-sources, their selections and boot-resources (list and each) answer."""
    seen: dict[str, Any] = {}
    async with serving(target, scene.root, scene.region_key, aiohttp_client) as get:
        seen["/boot-sources/"] = await get("/boot-sources/", populated.admin)
        for source in seen["/boot-sources/"]:
            path = f"/boot-sources/{source['id']}/selections/"
            seen[path] = await get(path, populated.admin)
        seen["/boot-resources/"] = await get("/boot-resources/", populated.user)
        for resource in seen["/boot-resources/"]:
            path = f"/boot-resources/{resource['id']}/"
            seen[path] = await get(path, populated.user)
    return seen


async def row_counts(target: Path | str) -> dict[str, int]:
    """Rows of every data table of ``target``."""
    async with open_db(target, readers=1) as db, db.read() as conn:
        return {table: await count(conn, table) for table in await tables(conn)}


async def test_a_copied_region_answers_the_api_alike_on_postgresql_and_back(
    populated: Populated,
    scene: Scene,
    postgres_server: PostgresServer,
    aiohttp_client: AiohttpClient,
    log_events: Events,
) -> None:
    """SQLite -> PostgreSQL -> SQLite keeps every row and id: the API answers the same on all three."""
    url = await postgres_server.new_database()
    report = await copy_database(populated.path, url)
    before = await answers(populated.path, populated, scene, aiohttp_client)
    assert len(before["/boot-resources/"]) == 6  # noble ga and hwe, 4 bootloaders
    assert await answers(url, populated, scene, aiohttp_client) == before
    back = scene.root.parent / "back.db"
    await copy_database(url, f"sqlite://{back}")
    assert await answers(back, populated, scene, aiohttp_client) == before

    counts = await row_counts(populated.path)
    assert await row_counts(url) == counts == await row_counts(back)
    assert {t.name: t.rows for t in report.tables} == counts
    for table in ("regions", "region_blobs", "cluster_secrets", "http_cache", "web_sessions"):
        assert counts[table] >= 1, table
    assert counts["imported_products"] >= 1
    assert counts["boot_resource_files"] >= 10
    assert [e["event"] for e in log_events if e["event"].startswith("db_copy")] == [
        "db_copy_started",
        "db_copy_finished",
    ] * 2


async def test_ids_are_not_reused_after_a_copy(
    populated: Populated, scene: Scene, postgres_server: PostgresServer
) -> None:
    """New rows get ids past every id the source ever gave, even a deleted row's."""
    url = await postgres_server.new_database()
    report = await copy_database(populated.path, url)
    async with open_db(url, readers=1) as db:
        source = await repo_sources.create_source(db, url=scene.upstream.url("/new/"))
        user = await repo_users.create_user(db, "bob")
        async with db.read() as conn:
            cur = await conn.execute("SELECT MAX(id) FROM users")
            (row,) = await cur.fetchall()
    assert source.id == populated.deleted_source_id + 1
    assert user.id > 2
    assert user.id == row[0]
    next_ids = {t.name: t.next_id for t in report.tables}
    assert next_ids["boot_sources"] == source.id
    assert next_ids["racks"] is None  # keyed by system_id: nothing generated


async def test_a_non_empty_target_is_refused_and_left_alone(
    populated: Populated, postgres_server: PostgresServer, log_events: Events
) -> None:
    """A second copy into the same database is refused naming a table; its rows stay as they were."""
    url = await postgres_server.new_database()
    await copy_database(populated.path, url)
    counts = await row_counts(url)
    with pytest.raises(TargetNotEmptyError) as refused:
        await copy_database(populated.path, url)
    assert "is not empty: table " in str(refused.value)
    assert refused.value.rows >= 1
    assert await row_counts(url) == counts
    (event,) = [e for e in log_events if e["event"] == "db_copy_refused"]
    assert event["reason"] == "target_not_empty"


async def test_a_table_the_target_lacks_is_refused_by_name(tmp_path: Path) -> None:
    """Tables come from the schemas: an extra table in the source fails the copy, naming it."""
    source, target = tmp_path / "a.db", tmp_path / "b.db"
    async with open_db(source, readers=1) as db, db.write() as conn:
        await conn.execute("CREATE TABLE from_the_future (id INTEGER PRIMARY KEY)")
    with pytest.raises(SchemaMismatchError, match=r"only in the source \['from_the_future'\]"):
        await copy_database(source, target)


async def test_a_source_at_another_schema_version_is_refused(tmp_path: Path) -> None:
    """A source migrated to another version than this bootsync's is refused before any write."""
    source, target = tmp_path / "old.db", tmp_path / "new.db"
    async with open_db(source, readers=1):
        pass
    with sqlite3.connect(source) as raw:
        raw.execute("PRAGMA user_version = 3")
    with pytest.raises(SchemaMismatchError, match="schema version 3"):
        await copy_database(source, target)
    assert not target.exists()


async def test_a_missing_source_file_is_refused_and_no_target_is_made(tmp_path: Path) -> None:
    """A source path that names no file is refused as such; the target file is not created."""
    target = tmp_path / "new.db"
    with pytest.raises(NoSourceError, match="no such database file"):
        await copy_database(tmp_path / "typo.db", target)
    assert not target.exists()


async def _bootsync(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_bootsync_db_copy_command_copies_then_refuses_with_exit_2(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """`bootsync db copy` prints every table's rows and exits 0; again into the same target, 2."""
    source = tmp_path / "region.db"
    async with open_db(source, readers=1) as db:
        await _populate(db, "http://upstream.invalid/gone/")
    url = await postgres_server.new_database()
    code, out, err = await _bootsync("db", "copy", "--from", f"sqlite://{source}", "--to", url)
    assert code == 0, err
    lines = dict(line.split() for line in out.splitlines()[1:-1])
    assert lines == {k: str(v) for k, v in (await row_counts(source)).items()}
    assert out.splitlines()[-1].startswith("copied ")
    assert "row counts verified" in out
    assert "copied users: 2 row(s)" in err
    code, out, err = await _bootsync("db", "copy", "--from", f"sqlite://{source}", "--to", url)
    assert code == 2
    assert out == ""
    assert "bootsync db copy: error: " in err
    assert "is not empty: table" in err
