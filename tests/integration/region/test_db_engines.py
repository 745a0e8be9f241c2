"""Every repository on both engines: SQLite files and a real PostgreSQL server.

The ``engine`` fixture is parametrised: each test runs once on a fresh SQLite
file and once on a fresh database of the session's PostgreSQL server
(tests/fakes/postgres.py, started with initdb + pg_ctl in a temp dir).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.rackproto import HostFacts, RackImage, RackStatus, Registration
from common.transfer.fetch import CachedDocument
from region.db import catalogue as repo_catalogue
from region.db import config as repo_config
from region.db import http_cache, page_reads, web_auth
from region.db import imported_products as repo_products
from region.db import imports as repo_import
from region.db import racks as repo_racks
from region.db import resources as repo_resources
from region.db import sources as repo_sources
from region.db import uploads as repo_uploads
from region.db import users as repo_users
from region.db.catalogue import CatalogueEntry
from region.db.connection import Database, check_db, migrations, open_db
from region.db.imports import WantedFile, WantedSet
from region.db.sources import DuplicateError
from region.db.uploads import NewUpload
from tests.fakes.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> PostgresServer | None:
    """The engine under test: None for SQLite, else the session's PostgreSQL server."""
    if request.param == "sqlite":
        return None
    started: PostgresServer = request.getfixturevalue("postgres_server")
    return started


@pytest.fixture
async def target(server: PostgresServer | None, tmp_path: Path) -> str | Path:
    """A fresh database on each engine: a SQLite file, or a new PostgreSQL database."""
    if server is None:
        return tmp_path / "region.db"
    return await server.new_database()


@pytest.fixture
async def db(target: str | Path) -> AsyncIterator[Database]:
    """The region database opened (and migrated) on the test's engine."""
    async with open_db(target, readers=2) as opened:
        yield opened


def wanted(name: str, sha: str = "a" * 64) -> WantedSet:
    """A synced image with one 10-byte squashfs."""
    return WantedSet(
        name=name,
        architecture="amd64/generic",
        kflavor=None,
        bootloader_type=None,
        rolling=False,
        extra={"title": name},
        version="20250101",
        label="stable",
        files=(WantedFile("squashfs", "squashfs", sha, 10),),
    )


async def count_config(db: Database) -> int:
    """Rows in ``config``, read on a reader."""
    async with db.read() as conn, conn.execute("SELECT COUNT(*) FROM config") as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def test_both_engines_ship_the_same_migration_numbers() -> None:
    """SQLite and PostgreSQL have one migration file per number, with the same names."""
    sqlite = [(n, name) for n, name, _ in migrations("sqlite")]
    postgresql = [(n, name) for n, name, _ in migrations("postgresql")]
    assert sqlite == postgresql


async def test_a_fresh_database_is_at_the_shipped_schema_version(target: str | Path) -> None:
    """check_db reports 0 before the first open and the last migration's number after it."""
    before, shipped = await check_db(target)
    assert before == 0
    async with open_db(target, readers=1):
        pass
    async with open_db(target, readers=1):  # a second open applies nothing and fails nothing
        pass
    assert await check_db(target) == (shipped, shipped)
    assert shipped == (await asyncio.to_thread(migrations))[-1][0]


async def test_users_tokens_and_duplicates(db: Database) -> None:
    """Users get ids, tokens resolve to their user, and a taken username is a DuplicateError."""
    alice = await repo_users.create_user(db, "alice", email="a@example.com", is_admin=True)
    bob = await repo_users.create_user(db, "bob")
    assert bob.id > alice.id > 0
    key = await repo_users.create_token(db, alice.id)
    found = await repo_users.user_for_token(db, *key)
    assert found is not None
    assert found.username == "alice"
    assert found.is_admin
    assert await repo_users.first_token(db, alice.id) == key
    with pytest.raises(DuplicateError):
        await repo_users.create_user(db, "alice")
    await repo_users.update_user(db, bob.id, is_admin=True, email="b@example.com")
    got = await repo_users.get_user(db, "bob")
    assert got is not None
    assert got.is_admin
    assert got.email == "b@example.com"


async def test_ids_are_never_given_twice(db: Database) -> None:
    """Deleting the newest source does not give its id to the next one."""
    first = await repo_sources.create_source(db, url="http://a.example/streams/v1/index.sjson")
    second = await repo_sources.create_source(db, url="http://b.example/streams/v1/index.sjson")
    assert await repo_sources.delete_source(db, second.id)
    third = await repo_sources.create_source(db, url="http://c.example/streams/v1/index.sjson")
    assert third.id > second.id > first.id


async def test_sources_and_selections(db: Database) -> None:
    """Sources keep their keyring bytes and options; selections are listed, updated, deleted."""
    source = await repo_sources.create_source(
        db, url="http://x.example/streams/v1/index.json", keyring_data=b"\x00\x01key"
    )
    assert source.keyring_data == b"\x00\x01key"
    assert source.skip_keyring_verification
    assert source.enabled
    assert source.priority == 1
    with pytest.raises(DuplicateError) as caught:
        await repo_sources.create_source(db, url="http://x.example/streams/v1/index.json")
    assert caught.value.field in {"url", "name"}  # both are unique; either may be named first
    selection = await repo_sources.create_selection(
        db, source.id, os="ubuntu", release="noble", arches=["amd64"]
    )
    updated = await repo_sources.update_selection(
        db, source.id, selection.id, arches=["amd64", "arm64"]
    )
    assert updated is not None
    assert updated.arches == ("amd64", "arm64")
    assert [s.id for s in await repo_sources.list_selections(db, source.id)] == [selection.id]
    fingerprint = await repo_sources.sources_fingerprint(db)
    assert await repo_sources.delete_selection(db, source.id, selection.id)
    assert await repo_sources.sources_fingerprint(db) != fingerprint
    changed = await repo_sources.update_source(db, source.id, enabled=False, priority=7)
    assert changed is not None
    assert not changed.enabled
    assert changed.priority == 7


async def test_catalogue_status_and_rollback_guards(db: Database) -> None:
    """The catalogue is diffed, the index's first-seen time kept, guards remembered per URL."""
    source = await repo_sources.create_source(db, url="http://x.example/streams/v1/index.sjson")
    entry = CatalogueEntry("ubuntu", "amd64", "generic", "noble", "stable", title="Noble")
    diff = await repo_catalogue.replace_catalogue(db, source.id, [entry])
    assert (diff.added, diff.updated, diff.removed) == (1, 0, 0)
    assert await repo_catalogue.available(db, source.id) == [entry]
    assert await repo_catalogue.has_catalogue(db, source.id)
    await repo_catalogue.record_checked(db, source.id, index_updated="u1", warnings=["w"])
    first = await repo_catalogue.get_status(db, source.id)
    await asyncio.sleep(0.01)
    await repo_catalogue.record_checked(db, source.id, index_updated="u1", warnings=[])
    again = await repo_catalogue.get_status(db, source.id)
    assert again.index_changed_at == first.index_changed_at
    assert again.warnings == ()
    await repo_catalogue.record_error(db, source.id, "boom")
    assert (await repo_catalogue.get_status(db, source.id)).last_error == "boom"
    await repo_catalogue.remember_imported_index(db, source.url, "u1")
    await repo_catalogue.remember_imported_index(db, source.url, "u2")
    assert await repo_catalogue.last_imported_index(db, source.url) == "u2"
    await repo_products.remember_imported_products(
        db, source.url, "com.example:v1", updated="d1", versions={"p": "20250101"}
    )
    products = await repo_products.last_imported_products(db, source.url, "com.example:v1")
    assert products is not None
    assert products.versions == {"p": "20250101"}
    await repo_config.set_config(db, "maas_name", "region")
    assert await repo_config.get_config(db, "maas_name") == "region"
    assert await repo_config.set_config_unless_set(db, {"maas_name": "x", "http_proxy": ""}) == {
        "http_proxy": ""
    }


async def test_imports_resources_and_runs(db: Database) -> None:
    """An import writes resources and files, records bytes done, and its run is recorded."""
    run = await repo_import.start_run(db)
    created = await repo_import.write_wanted(db, [wanted("ubuntu/noble")], {})
    assert created == {("ubuntu/noble", "amd64/generic")}
    await repo_import.set_bytes_done(db, {"a" * 64: 10})
    listed = await repo_resources.list_resources(db)
    assert [r.name for r, _totals in listed] == ["ubuntu/noble"]
    assert len(await repo_resources.complete_sets(db)) == 1
    assert await repo_import.referenced_sha256(db) == {"a" * 64}
    await repo_import.finish_run(db, run, "ok", {"added": 1})
    assert await repo_import.last_ok_import(db) is not None
    last = await page_reads.last_finished_import(db)
    assert last is not None
    assert set(await page_reads.resource_updated(db)) == {listed[0][0].id}
    await repo_import.write_wanted(db, [wanted("ubuntu/jammy", "c" * 64)], {})
    assert await repo_import.clean_sets(db) == 1  # jammy's set never completed
    resource = listed[0][0]
    assert await repo_resources.delete_resource(db, resource.id)
    await repo_import.delete_resources(
        db, [r.id for r, _t in await repo_resources.list_resources(db)]
    )
    assert await repo_resources.list_resources(db) == []


async def test_uploads(db: Database) -> None:
    """An upload makes a resource, a set and a file, and completes."""
    new = NewUpload("custom/img", "amd64/generic", "Img", "tgz", "", keep_old=False)
    resource_id, file_id = await repo_uploads.create_upload(
        db, new, sha256="b" * 64, size=5, stored=False
    )
    assert file_id in await repo_uploads.incomplete_file_ids(db)
    await repo_uploads.record_progress(db, file_id, 5)
    upload = await repo_uploads.get_file(db, resource_id, file_id)
    assert upload is not None
    await repo_uploads.complete(db, upload)
    assert await repo_uploads.sizes_of(db, "b" * 64) == {5}


async def test_racks(db: Database) -> None:
    """A rack registers with a fresh system id, reports status, and its credential checks."""
    host = HostFacts("amd64", 4, 2000, 8192, "ubuntu", "noble", "0.1.0")
    rack, new = await repo_racks.register_rack(
        db, Registration("rack1", "http://10.0.0.5:5248", host=host), credential="c" * 64
    )
    assert new
    assert len(rack.system_id) == 6
    assert await repo_racks.check_credential(db, rack.system_id, "c" * 64)
    status = RackStatus(
        state="synced", snapshot_id="s1", images=[RackImage("ubuntu/noble", "amd64", ["generic"])]
    )
    assert await repo_racks.store_status(db, rack.system_id, status)
    got = await repo_racks.get_rack(db, rack.system_id)
    assert got is not None
    assert got.state == "synced"
    assert [r.system_id for r in await repo_racks.list_racks(db)] == [rack.system_id]
    await repo_racks.touch_rack(db, rack.system_id)
    issued = await repo_racks.issue_credential(db, rack.system_id)
    assert issued is not None
    assert await repo_racks.check_credential(db, rack.system_id, issued)
    with pytest.raises(repo_racks.RackCredentialError):
        await repo_racks.check_credential(db, rack.system_id, "c" * 64)


async def test_http_cache(db: Database) -> None:
    """A kept document's bytes and validators come back as stored, and a new one replaces it."""
    await http_cache.put_document(db, "http://u/x", CachedDocument(b"\x00one", '"e1"', None))
    await http_cache.put_document(db, "http://u/x", CachedDocument(b"\x00two", '"e2"', "Mon"))
    got = await http_cache.get_document(db, "http://u/x")
    assert got == CachedDocument(b"\x00two", '"e2"', "Mon")


async def test_web_logins(db: Database) -> None:
    """A password logs its user in; a session is found by its token and ended."""
    user = await repo_users.create_user(db, "carol")
    await web_auth.set_password(db, user.id, "long enough password")
    assert await web_auth.authenticate(db, "carol", "long enough password") is not None
    token, _csrf = await web_auth.create_session(db, user.id)
    assert (await web_auth.get_session(db, token)) is not None
    await web_auth.delete_session(db, token)
    assert await web_auth.get_session(db, token) is None


async def test_a_failed_write_rolls_back_and_integrity_errors_are_sqlite3s(db: Database) -> None:
    """A write block that raises leaves nothing behind; a constraint error is sqlite3.IntegrityError."""

    async def twice() -> None:
        async with db.write() as conn:
            await conn.execute("INSERT INTO config (name, value) VALUES (?, '1')", ("k",))
            await conn.execute("INSERT INTO config (name, value) VALUES (?, '2')", ("k",))

    with pytest.raises(sqlite3.IntegrityError):
        await twice()
    assert await count_config(db) == 0


async def test_a_reader_sees_one_snapshot(db: Database) -> None:
    """A read block does not see a write committed after it began."""
    await repo_config.set_config(db, "maas_name", "a")
    async with db.read() as conn:
        before = await (await conn.execute("SELECT COUNT(*) FROM config")).fetchone()
        await repo_config.set_config(db, "http_proxy", "")
        during = await (await conn.execute("SELECT COUNT(*) FROM config")).fetchone()
    assert before is not None
    assert during is not None
    assert before[0] == during[0] == 1
    assert await count_config(db) == 2


async def test_two_regions_share_one_postgresql_server(postgres_server: PostgresServer) -> None:
    """Two regions opening one database at once migrate it once and never share an id."""
    url = await postgres_server.new_database()
    async with open_db(url, readers=1) as one, open_db(url, readers=1) as two:
        made = await asyncio.gather(
            *(
                repo_users.create_user(region, f"user{n}")
                for n in range(20)
                for region in ((one, two)[n % 2],)
            )
        )
        seen = await repo_users.get_user(two, "user0")
    assert len({user.id for user in made}) == 20
    assert seen is not None
    shipped = (await asyncio.to_thread(migrations, "postgresql"))[-1][0]
    assert await check_db(url) == (shipped, shipped)
