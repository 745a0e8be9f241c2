"""Peer sync between two regions on one real PostgreSQL, each with its own data dir and store.

Region A imports from the fake upstream; region B fetches A's blobs from A's peer
route (``/MAAS/cluster/blobs/<sha256>`` on a real port), never from upstream, with
the import's transfer code (verified, resumed); the status says which regions are
still syncing. The peer route's answers (401/400/404/200/206) are checked on the wire.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from common.mirror.samplestream import SampleStream
from common.storage.blobstore import BlobStore
from common.storage.snapshot import SnapshotPublisher
from common.transfer.http import make_session
from common.trust.keyrings import SigningKey
from region.api import boot_resources, peer_blobs
from region.api.auth import auth_middleware
from region.api.http import API_ROOT, maas_errors
from region.api.registry import add_routes
from region.cluster import holdings, registry
from region.cluster.events import ClusterEvents, open_events
from region.cluster.identity import RegionIdentity
from region.cluster.peer_wire import PEER_TOKEN_HEADER, peer_blob_url
from region.cluster.peers import PeerSync
from region.config import RegionConfig
from region.context import CTX, RegionContext
from region.db import resources as repo_resources
from region.db import sources as repo_sources
from region.db.connection import Database, open_db
from region.images.catalogue import Catalogue
from region.images.importer import Importer, ImportSettings
from region.images.publish import PRODUCTS_PATH
from region.images.status import SYNCED, SYNCING_REGIONS
from region.ui.page import read_images
from tests.fakes.postgres import PostgresServer
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually
from tests.integration.region.api_harness import (
    IdleImporter,
    RecordingCatalogue,
    make_key,
    oauth_header,
)
from tests.integration.region.import_harness import sample_stream

TOKEN = "cluster-peer-token-for-the-tests"
BLOB = "/MAAS/cluster/blobs/"


@dataclass
class Region:
    """One region's own parts on the shared database, and its peer route on a real port."""

    name: str
    root: Path
    db: Database
    store: BlobStore
    publisher: SnapshotPublisher
    importer: Importer
    events: ClusterEvents
    member: registry.ClusterMember
    url: str
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)

    def peer_sync(self, **options: Any) -> PeerSync:
        """This region's PeerSync (not started), republishing through its importer."""

        async def republish() -> bool:
            return await self.importer.republish(reason="peer_sync")

        return PeerSync(
            db=self.db,
            store=self.store,
            cluster=self.member,
            token=lambda: TOKEN,
            republish=republish,
            events=self.events,
            retries=1,
            **options,
        )

    async def held(self) -> dict[tuple[str, str], list[str]]:
        """(name, architecture) → versions of the sets this region's stream publishes."""
        path = self.publisher.current_link / PRODUCTS_PATH
        try:
            doc = json.loads(await asyncio.to_thread(path.read_bytes))
        except FileNotFoundError:
            return {}
        return {
            (p["os"] + "/" + p["release"], p["arch"] + "/" + p["subarch"]): sorted(p["versions"])
            for p in doc["products"].values()
        }


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1; its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def peer_app(store: BlobStore, seen: list[tuple[str, str | None]]) -> web.Application:
    """The peer route of a region, recording each request's path and Range."""

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        seen.append((request.path, request.headers.get("Range")))
        return await handler(request)

    app = web.Application(middlewares=[record, maas_errors])
    peer_blobs.add_routes(app)
    app[peer_blobs.PEER_BLOBS] = peer_blobs.PeerBlobSource(store, token=lambda: TOKEN)
    return app


@asynccontextmanager
async def region_on(database: str, root: Path, name: str, key: SigningKey) -> AsyncIterator[Region]:
    """Region ``name``: its own store under ``root``, the shared ``database``, its peer route."""
    settings = ImportSettings(create_default_source=False, progress_interval_s=0.02)
    store = BlobStore(root / "store")
    publisher = SnapshotPublisher(root / "stream", store)
    seen: list[tuple[str, str | None]] = []
    async with (
        open_db(database, readers=2) as db,
        open_events(db, name) as events,
        make_session(user_agent="bootsync-test") as session,
        serving(peer_app(store, seen)) as url,
    ):
        catalogue = Catalogue(db, session, frozen_after_hours=72, limits=settings.transfer)
        importer = Importer(
            db,
            session,
            store=store,
            publisher=publisher,
            region_key=key,
            catalogue=catalogue,
            settings=settings,
        )
        member = await registry.ClusterMember.join(db, RegionIdentity(name=name, url=url))
        try:
            yield Region(name, root, db, store, publisher, importer, events, member, url, seen)
        finally:
            await importer.stop()
            await catalogue.close()


@dataclass
class Pair:
    """Regions A and B on one PostgreSQL database, and the upstream A imports from."""

    a: Region
    b: Region
    upstream: FakeUpstream
    stream: SampleStream

    async def import_on_a(self) -> None:
        """A imports the sample stream (noble amd64) and records what its store holds."""
        source = await repo_sources.create_source(
            self.a.db,
            url=self.upstream.url("/"),
            keyring_data=self.stream.keyring.read_bytes(),
        )
        await repo_sources.create_selection(
            self.a.db,
            source.id,
            os="ubuntu",
            release="noble",
            arches=["amd64"],
            subarches=["*"],
            labels=["*"],
        )
        summary = await self.a.importer.run_import("test")
        assert summary.outcome == "ok", summary
        assert await holdings.refresh_holdings(self.a.db, self.a.store, self.a.member.region_id)


@pytest.fixture
async def pair(
    tmp_path: Path,
    postgres_server: PostgresServer,
    region_key: SigningKey,
    upstream_key: SigningKey,
    fake_upstream: FakeUpstream,
) -> AsyncIterator[Pair]:
    """Regions A and B (own data dirs and stores) on a fresh PostgreSQL database."""
    stream = await asyncio.to_thread(sample_stream, tmp_path / "upstream", upstream_key)
    fake_upstream.serve_directory(stream.root)
    database = await postgres_server.new_database()
    async with (
        region_on(database, tmp_path / "a", "region-a", region_key) as a,
        region_on(database, tmp_path / "b", "region-b", region_key) as b,
    ):
        yield Pair(a=a, b=b, upstream=fake_upstream, stream=stream)


async def test_b_fetches_a_s_blobs_from_a_never_from_upstream(pair: Pair) -> None:
    """B's pass fetches every blob of A's import from A's peer route, upstream sends nothing more."""
    await pair.import_on_a()
    wanted = await holdings.complete_set_blobs(pair.a.db)
    upstream_before = pair.upstream.served_bytes()
    assert await pair.b.held() == {}

    sync = pair.b.peer_sync()
    await sync.start()
    try:
        result = await sync.sync("test")
    finally:
        await sync.close()

    assert result.fetched == len(wanted) > 0
    assert result.failed == result.unavailable == 0
    assert result.bytes_received == sum(b.size for b in wanted)
    assert pair.upstream.served_bytes() == upstream_before  # nothing from upstream
    assert await holdings.held_by_store(pair.b.store, wanted) == {b.sha256 for b in wanted}
    assert {p for p, _ in pair.a.requests} == {BLOB + b.sha256 for b in wanted}
    assert await holdings.recorded_holdings(pair.b.db, pair.b.member.region_id) == {
        b.sha256 for b in wanted
    }
    assert await pair.b.held() == await pair.a.held() != {}  # B republished: its stream has them


async def test_an_import_finished_event_makes_b_fetch_and_republish(pair: Pair) -> None:
    """Started before A imports, B's PeerSync hears A's import_finished over PostgreSQL and syncs."""
    a_sync, b_sync = pair.a.peer_sync(), pair.b.peer_sync()
    await a_sync.start()
    await b_sync.start()
    try:
        await pair.import_on_a()
        await pair.a.events.publish("import_finished", outcome="ok", published=True)
        published = await pair.a.held()
        await eventually(
            lambda: _same(pair.b.held(), published), "B's stream to publish A's images", timeout=20
        )
    finally:
        await a_sync.close()
        await b_sync.close()
    assert b_sync.fetched_total == len(await holdings.complete_set_blobs(pair.a.db))


async def _same(got: Awaitable[object], expected: object) -> bool:
    return await got == expected


async def test_b_publishes_only_the_sets_its_own_store_holds(pair: Pair) -> None:
    """Before B fetches, republishing B's stream skips A's complete sets rather than failing."""
    await pair.import_on_a()
    assert await pair.b.importer.republish(reason="test")
    assert await pair.b.held() == {}
    assert len(await repo_resources.complete_sets(pair.b.db)) > 0


async def test_a_corrupted_byte_from_the_peer_is_refused_and_fetched_again(pair: Pair) -> None:
    """A peer answer with one flipped byte fails its sha256 check; the blob is fetched again, whole."""
    await pair.import_on_a()
    wanted = await holdings.complete_set_blobs(pair.a.db)
    corrupted: list[str] = []

    async def flipping(request: web.Request) -> web.StreamResponse:
        headers = {PEER_TOKEN_HEADER: request.headers.get(PEER_TOKEN_HEADER, "")}
        if "Range" in request.headers:
            headers["Range"] = request.headers["Range"]
        sha = request.match_info["sha256"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(peer_blob_url(pair.a.url, sha), headers=headers) as resp,
        ):
            body = bytearray(await resp.read())
            status = resp.status
        if sha not in corrupted and body:
            corrupted.append(sha)
            body[len(body) // 2] ^= 0xFF
        return web.Response(status=status, body=bytes(body))

    proxy = web.Application()
    proxy.router.add_get(BLOB + "{sha256}", flipping)
    async with serving(proxy) as proxy_url:
        await registry.join(pair.a.db, pair.a.name, proxy_url)  # B now reaches A via the proxy
        sync = pair.b.peer_sync()
        await sync.start()
        try:
            result = await sync.sync("test")
        finally:
            await sync.close()
    assert sorted(corrupted) == sorted(b.sha256 for b in wanted)
    assert result.fetched == len(wanted)
    assert result.failed == 0
    # Each blob came twice: the corrupted answer was refused and the second kept.
    assert result.bytes_received == 2 * sum(b.size for b in wanted)
    assert await holdings.held_by_store(pair.b.store, wanted) == {b.sha256 for b in wanted}


async def test_b_keeps_its_stream_while_a_blob_is_still_missing_then_republishes(
    pair: Pair,
) -> None:
    """A pass that fetched some blobs but not all leaves B's stream as it was (a partial one
    would make its racks drop images); the pass that fetches the last one republishes."""
    await pair.import_on_a()
    wanted = await holdings.complete_set_blobs(pair.a.db)
    withheld = wanted[0].sha256

    async def withholding(request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha256"]
        if sha == withheld:
            return web.Response(status=503)
        headers = {PEER_TOKEN_HEADER: request.headers.get(PEER_TOKEN_HEADER, "")}
        async with (
            aiohttp.ClientSession() as session,
            session.get(peer_blob_url(pair.a.url, sha), headers=headers) as resp,
        ):
            return web.Response(status=resp.status, body=await resp.read())

    before = await pair.b.publisher.current_id()
    proxy = web.Application()
    proxy.router.add_get(BLOB + "{sha256}", withholding)
    async with serving(proxy) as proxy_url:
        await registry.join(pair.a.db, pair.a.name, proxy_url)
        sync = pair.b.peer_sync()
        await sync.start()
        try:
            partial = await sync.sync("test")
        finally:
            await sync.close()
    assert partial.fetched == len(wanted) - 1
    assert partial.failed == 1
    assert await pair.b.publisher.current_id() == before
    await registry.join(pair.a.db, pair.a.name, pair.a.url)
    sync = pair.b.peer_sync()
    await sync.start()
    try:
        last = await sync.sync("test", republish=False)
    finally:
        await sync.close()
    assert last.fetched == 1
    assert await pair.b.publisher.current_id() not in (None, before)


async def test_a_partial_peer_fetch_is_resumed_with_a_range_request(pair: Pair) -> None:
    """Half a blob left in B's store by an interrupted fetch is completed with a Range request."""
    await pair.import_on_a()
    wanted = await holdings.complete_set_blobs(pair.a.db)
    big = max(wanted, key=lambda b: b.size)
    half = big.size // 2
    data = await asyncio.to_thread(pair.a.store.path_for(big.sha256).read_bytes)
    await pair.b.store.prepare()
    await asyncio.to_thread(pair.b.store.partial_path(big.sha256).write_bytes, data[:half])

    sync = pair.b.peer_sync()
    await sync.start()
    try:
        result = await sync.sync("test")
    finally:
        await sync.close()
    assert result.fetched == len(wanted)
    assert (BLOB + big.sha256, f"bytes={half}-") in pair.a.requests
    assert result.bytes_received == sum(b.size for b in wanted) - half
    assert await pair.b.store.has(big.sha256, big.size)


async def test_status_names_the_regions_still_syncing_until_they_hold_the_image(
    pair: Pair, aiohttp_client: AiohttpClient, region_key: SigningKey
) -> None:
    """The API and Images page say Syncing to region controller(s), naming B, until B holds it."""
    await pair.import_on_a()
    async with aiohttp.ClientSession() as session:
        ctx = RegionContext(
            data_dir=pair.b.root,
            db=pair.b.db,
            session=session,
            store=pair.b.store,
            publisher=pair.b.publisher,
            region_key=region_key,
            importer=IdleImporter(),
            catalogue=RecordingCatalogue(),
            config=RegionConfig(data_dir=pair.b.root),
        )
        ctx.cluster = pair.b.member
        app = web.Application(middlewares=[maas_errors, auth_middleware])
        app[CTX] = ctx
        add_routes(app, boot_resources.HANDLERS)
        client = await aiohttp_client(app)
        admin = await make_key(ctx, "admin", admin=True)
        auth = {"Authorization": oauth_header(admin, realm=True)}

        async def statuses() -> list[tuple[str, list[str]]]:
            resp = await client.get(API_ROOT + "/boot-resources/", headers=auth)
            assert resp.status == 200
            listed = await resp.json()
            return [(r["status"], r.get("syncing_regions", [])) for r in listed]

        before = await statuses()
        page = await read_images(ctx, None)
        sync = pair.b.peer_sync()
        await sync.start()
        try:
            await sync.sync("test")
        finally:
            await sync.close()
        after = await statuses()

    assert before
    assert all(s == (SYNCING_REGIONS, ["region-b"]) for s in before)
    assert page
    assert all((r.status, r.reason) == (SYNCING_REGIONS, "region-b") for r in page)
    assert after
    assert all(s == (SYNCED, []) for s in after)


async def test_only_the_live_regions_lacking_the_blobs_are_named(pair: Pair) -> None:
    """After A's import every image lacks only on B; a cluster of A alone lacks nothing."""
    await pair.import_on_a()
    live = {r.id: r.name for r in await pair.a.member.live_regions()}
    assert set(live.values()) == {"region-a", "region-b"}
    lacking = await holdings.regions_lacking(pair.a.db, live)
    assert lacking
    assert all(names == ["region-b"] for names in lacking.values())
    alone = {pair.a.member.region_id: pair.a.name}
    assert await holdings.regions_lacking(pair.a.db, alone) == {}


async def test_the_peer_route_answers_401_400_404_200_and_206(pair: Pair) -> None:
    """Without or with a wrong token 401; a malformed sha256 400; a blob not held 404; else the bytes."""
    await pair.import_on_a()
    blob = max(await holdings.complete_set_blobs(pair.a.db), key=lambda b: b.size)
    data = await asyncio.to_thread(pair.a.store.path_for(blob.sha256).read_bytes)
    url = peer_blob_url(pair.a.url, blob.sha256)
    good = {PEER_TOKEN_HEADER: TOKEN}
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.status == 401
        async with session.get(url, headers={PEER_TOKEN_HEADER: TOKEN + "x"}) as resp:
            assert resp.status == 401
        async with session.get(pair.a.url + BLOB + "not-a-sha256", headers=good) as resp:
            assert resp.status == 400
            assert "sha256" in await resp.json()
        async with session.get(pair.a.url + BLOB + "NOTHEX", headers={}) as resp:
            assert resp.status == 401  # the token is checked first: no probing without it
        async with session.get(peer_blob_url(pair.a.url, "0" * 64), headers=good) as resp:
            assert resp.status == 404
        async with session.get(url, headers=good) as resp:
            assert resp.status == 200
            assert await resp.read() == data
        async with session.get(url, headers={**good, "Range": "bytes=100-"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
            assert await resp.read() == data[100:]
        async with session.head(url, headers=good) as resp:
            assert resp.status == 200
            assert resp.content_length == len(data)
