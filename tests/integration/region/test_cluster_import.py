"""The import lease: two regions' importers on one database, against the fake upstream.

Each region has its own store and stream and a Database handle of its own on
one SQLite file or one PostgreSQL database (tests/fakes/postgres.py), with the
real Importer, ImportLease and ClusterEvents on fast timings.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.storage.blobstore import BlobStore
from common.storage.snapshot import SnapshotPublisher
from common.transfer.http import make_session
from common.trust.keyrings import SigningKey
from region.cluster import lease as leases
from region.cluster.events import open_events
from region.cluster.identity import RegionIdentity
from region.cluster.lease import IMPORT, ImportLease
from region.db import sources as repo_sources
from region.db.connection import Database, open_db
from region.db.timestamps import now_iso
from region.images.catalogue import Catalogue
from region.images.importer import Importer, ImportSettings
from simplestreams import flatten, parse_products
from simplestreams.screen import DEFAULT_MAX_ITEM_SIZE
from tests.fakes.postgres import PostgresServer
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually
from tests.integration.region.import_harness import KERNEL, V3, Scene

Events = list[MutableMapping[str, Any]]
BIG = int(2.5 * (1 << 20))  # a file the downloader writes in more than one batch
STALL_AT = 2 << 20


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> PostgresServer | None:
    """The engine under test: None for SQLite, else the session's PostgreSQL server."""
    if request.param == "sqlite":
        return None
    started: PostgresServer = request.getfixturevalue("postgres_server")
    return started


@pytest.fixture
async def target(server: PostgresServer | None, tmp_path: Path) -> str | Path:
    """The cluster's database on the engine under test."""
    if server is None:
        return tmp_path / "cluster.db"
    return await server.new_database()


@pytest.fixture
def big_stream(tmp_path: Path, upstream_key: SigningKey) -> SampleStream:
    """A stream whose kernels, initrds and squashfs are 2.5 MiB."""
    return write_sample_stream(
        tmp_path / "upstream-big", file_size=BIG, versions=1, signing_key=upstream_key
    )


@dataclass
class ClusterRegion:
    """One region's import machinery in the cluster."""

    name: str
    db: Database
    store: BlobStore
    importer: Importer
    heard: list[dict[str, Any]] = field(default_factory=list)  # import_finished events


@asynccontextmanager
async def cluster_region(
    root: Path,
    target: str | Path,
    name: str,
    key: SigningKey,
    *,
    heartbeat_s: float = 0.05,
    lease_s: float = 0.5,
) -> AsyncIterator[ClusterRegion]:
    """Region ``name`` over ``root`` on the cluster's database ``target``."""
    settings = ImportSettings(create_default_source=False, progress_interval_s=0.02)
    root.mkdir(parents=True, exist_ok=True)
    store = BlobStore(root / "store")
    publisher = SnapshotPublisher(root / "stream", store)
    identity = RegionIdentity(name, f"http://{name}:5240", heartbeat_s, lease_s)
    async with (
        open_db(target, readers=2) as db,
        open_events(db, name) as events,
        make_session(user_agent="bootsync-test") as session,
    ):
        catalogue = Catalogue(
            db,
            session,
            frozen_after_hours=72,
            max_item_size=DEFAULT_MAX_ITEM_SIZE,
            limits=settings.transfer,
        )
        importer = Importer(
            db,
            session,
            store=store,
            publisher=publisher,
            region_key=key,
            catalogue=catalogue,
            settings=replace(settings),
            lease=ImportLease(db, identity),
            events=events,
        )
        region = ClusterRegion(name=name, db=db, store=store, importer=importer)

        async def note(fields: Mapping[str, Any]) -> None:
            region.heard.append(dict(fields))

        events.subscribe("import_finished", note)
        try:
            yield region
        finally:
            importer.stop_watching()
            await importer.stop()
            await catalogue.close()


async def add_source(db: Database, upstream: FakeUpstream, stream: SampleStream) -> None:
    """The upstream's stream as the cluster's one source, selecting noble amd64."""
    source = await repo_sources.create_source(
        db, url=upstream.url("/"), keyring_data=stream.keyring.read_bytes()
    )
    await repo_sources.create_selection(
        db, source.id, os="ubuntu", release="noble", arches=["amd64"], subarches=["*"], labels=["*"]
    )


def sha_of(stream: SampleStream, path: str) -> str:
    """The sha256 the stream's v3 products document gives for ``path``."""
    doc = parse_products((stream.root / "streams" / "v1" / f"{V3}.json").read_bytes())
    return next(i.sha256 for i in flatten(doc) if i.path == path and i.sha256)


def store_is_sound(store: BlobStore) -> bool:
    """Every blob in the store hashes to its name."""
    blobs = [p for p in (store.root / "sha256").rglob("*") if p.is_file()]
    return all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name for p in blobs)


async def incomplete_files(db: Database) -> int:
    """File rows not fully downloaded."""
    async with (
        db.read() as conn,
        conn.execute("SELECT COUNT(*) FROM boot_resource_files WHERE bytes_done < size") as cur,
    ):
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def stalled_and_rest_done(db: Database) -> bool:
    """True once only the stalled kernel is incomplete."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT filename, bytes_done FROM boot_resource_files WHERE bytes_done < size"
        ) as cur,
    ):
        rows = list(await cur.fetchall())
    return len(rows) == 1 and rows[0]["filename"] == "boot-kernel" and rows[0]["bytes_done"] > 0


async def outcomes(db: Database) -> list[str]:
    """The recorded outcomes of the import runs, in order."""
    async with db.read() as conn, conn.execute("SELECT outcome FROM import_runs ORDER BY id") as c:
        return [str(row[0]) for row in await c.fetchall()]


async def test_one_import_at_a_time_in_the_cluster(
    scene: Scene, target: str | Path, log_events: Events
) -> None:
    """While A imports, B's start() refuses and B is-importing; A's end releases the lease."""
    scene.upstream.stall(KERNEL, after_bytes=8192, seconds=0.5)
    async with (
        cluster_region(scene.root / "a", target, "region-a", scene.region_key) as a,
        cluster_region(scene.root / "b", target, "region-b", scene.region_key) as b,
    ):
        await add_source(a.db, scene.upstream, scene.stream)
        assert a.importer.start(reason="api:admin")
        await eventually(a.importer.holds_lease, "A holding the import lease")
        await b.importer.refresh_lease()
        assert b.importer.is_importing()
        assert not b.importer.running_here()
        assert not b.importer.start(reason="api:bob")
        direct = await b.importer.run_import("direct")  # the lease refuses it too
        await a.importer.wait_idle()
        await b.importer.refresh_lease()
        assert not b.importer.is_importing()
        stored = await leases.read_lease(b.db, IMPORT)
        await eventually(lambda: a.heard, "A's import_finished on the event bus")
    assert direct.outcome == "skipped"
    assert stored is not None
    assert (stored.holder, stored.pending) == (None, None)
    assert a.heard == [{"outcome": "ok", "published": True, "region": "region-a"}]
    skipped = [e["reason"] for e in log_events if e["event"] == "import_skipped"]
    assert skipped == ["region region-a is importing"] * 2
    assert [e["outcome"] for e in log_events if e["event"] == "import_finished"] == ["ok"]


async def test_losing_the_lease_cancels_the_import_cleanly(
    scene: Scene, big_stream: SampleStream, target: str | Path, log_events: Events
) -> None:
    """B takes the lease mid-download: A's import is cancelled, its partial kept, sets left to B."""
    scene.upstream.serve_directory(big_stream.root)
    scene.upstream.stall(KERNEL, after_bytes=STALL_AT, seconds=3)
    async with (
        cluster_region(scene.root / "a", target, "region-a", scene.region_key) as a,
        cluster_region(scene.root / "b", target, "region-b", scene.region_key) as b,
    ):
        await add_source(a.db, scene.upstream, big_stream)
        assert a.importer.start(reason="api:admin")
        await eventually(lambda: stalled_and_rest_done(a.db), "the kernel stalled, the rest done")
        later = datetime.fromisoformat(now_iso()) + timedelta(hours=1)
        assert await leases.take(b.db, IMPORT, "region-b", seconds=30, now=later) is not None
        async with asyncio.timeout(10):
            await a.importer.wait_idle()
        runs = await outcomes(a.db)
        left = await incomplete_files(a.db)
        stored = await leases.read_lease(a.db, IMPORT)
        partial = a.store.partial_path(sha_of(big_stream, KERNEL))
        await eventually(lambda: a.heard, "A's import_finished on the event bus")
    assert runs == ["cancelled"]
    assert left == 1  # the unfinished set is the new holder's to finish or drop
    assert stored is not None
    assert stored.holder == "region-b"
    assert 0 < partial.stat().st_size < BIG
    assert store_is_sound(a.store)
    lost = [e for e in log_events if e["event"] == "lease_lost"]
    assert [(e["reason"], e["holder"]) for e in lost] == [("taken", "region-b")]
    assert a.heard == [{"outcome": "cancelled", "published": True, "region": "region-a"}]


async def test_a_region_takes_over_the_import_of_a_region_that_died(
    scene: Scene, target: str | Path, log_events: Events
) -> None:
    """A died holding the lease of a pending import: B's watcher runs it, fetching nothing held."""
    async with (
        cluster_region(scene.root / "a", target, "region-a", scene.region_key) as a,
        cluster_region(scene.root / "b", target, "region-b", scene.region_key) as b,
    ):
        await add_source(b.db, scene.upstream, scene.stream)
        first = await b.importer.run_import("first")
        assert first.outcome == "ok"
        # A takes the lease for an import and dies at once: it never renews it.
        assert await leases.take(a.db, IMPORT, "region-a", seconds=0.3, pending="api:admin")
        b.importer.start_watching()
        finished = [e for e in log_events if e["event"] == "import_finished"]

        def taken_over() -> bool:
            finished[:] = [e for e in log_events if e["event"] == "import_finished"]
            return len(finished) == 2 and not b.importer.running_here()

        await eventually(taken_over, "B's takeover import", timeout=20)
        stored = await leases.read_lease(b.db, IMPORT)
    assert finished[1]["reason"] == "takeover"
    assert finished[1]["outcome"] == "ok"
    assert finished[1]["files_fetched"] == 0  # what B's store held was not fetched again
    assert stored is not None
    assert (stored.holder, stored.pending) == (None, None)
    events = [e["event"] for e in log_events if e["event"] in ("lease_expired", "import_resumed")]
    assert events == ["lease_expired", "import_resumed"]


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
async def test_a_database_outage_mid_import_fails_it_cleanly_and_the_next_succeeds(
    scene: Scene,
    server: PostgresServer,
    target: str,
    log_events: Events,
) -> None:
    """Connections refused and cut mid-download: the import fails, the store stays sound, the next is ok."""
    database = target.rsplit("/", 1)[1]
    scene.upstream.stall(KERNEL, after_bytes=8192, seconds=1.5)
    admin = await asyncpg.connect(server.url())
    try:
        async with cluster_region(
            scene.root / "a", target, "region-a", scene.region_key, lease_s=20
        ) as a:
            await add_source(a.db, scene.upstream, scene.stream)
            assert a.importer.start(reason="api:admin")
            await eventually(lambda: stalled_and_rest_done(a.db), "the kernel downloading")
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
            async with asyncio.timeout(20):
                await a.importer.wait_idle()
            sound = store_is_sound(a.store)
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            again = await a.importer.run_import("after the outage")
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
    first = next(e for e in log_events if e["event"] == "import_finished")
    assert first["outcome"] == "failed"
    assert sound
    assert again.outcome == "ok", again.errors
    assert store_is_sound(a.store)
