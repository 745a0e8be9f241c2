"""Two real region processes on one real PostgreSQL, and two real racks, on 127.0.0.1.

The racks register with region B only; the imports are started through region A.
What the cluster promises is checked from the outside: the racks hear of A's
import at once (through B), both regions answer the API alike, a region killed
in the middle of an import is replaced by the other, a PostgreSQL outage during
an import ends that import cleanly, and ``bootsync db copy`` moves a SQLite
region onto PostgreSQL with the same API answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.mirror.samplestream import SampleStream
from tests.fakes.daemons import DaemonProcess, bootsync, free_port, oauth
from tests.fakes.postgres import PostgresServer, postgres_server
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually

# Imported here, the session fixture gives this module a PostgreSQL server of its own:
# its tests halt and restart it, which must not disturb other modules.
__all__ = ["postgres_server"]

API = "/MAAS/api/2.0"
FILE_SIZE = 64 << 10
SQUASHFS = "ubuntu/amd64/ga-24.04/noble/stable/squashfs"
OLD_SQUASHFS = "noble/amd64/20250718/squashfs"
NEW_SQUASHFS = "noble/amd64/20250815/squashfs"
HEARTBEAT_S = 1
LEASE_S = 5  # a loaded machine may stall a renewal for a few seconds
START_S = 90  # a region's start on a loaded machine

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    """Regions A and B on one database, an admin key, and two racks that know only B."""

    regions: dict[str, DaemonProcess]
    racks: list[DaemonProcess]
    key: str
    database_url: str

    @property
    def a(self) -> DaemonProcess:
        return self.regions["region-a"]

    @property
    def b(self) -> DaemonProcess:
        return self.regions["region-b"]


def region_config(
    path: Path,
    data_dir: Path,
    *,
    upstream: FakeUpstream,
    stream: SampleStream,
    database_url: str | None = None,
    name: str = "",
    port: int = 0,
) -> Path:
    """Write a regiond.toml at ``path``: storage, database (None: SQLite), short cluster timings."""
    database = f'[database]\nurl = "{database_url}"\n' if database_url else ""
    cluster = f'name = "{name}"\nurl = "http://127.0.0.1:{port}"\n' if name else ""
    path.write_text(
        f'[storage]\ndata_dir = "{data_dir}"\n'
        f"{database}"
        "[import]\n"
        f'default_source_url = "{upstream.url("/")}"\n'
        f'default_keyring = "{stream.keyring}"\n'
        f"[cluster]\n{cluster}"
        f"heartbeat_seconds = {HEARTBEAT_S}\n"
        f"lease_seconds = {LEASE_S}\n"
        '[log]\nformat = "json"\nlevel = "debug"\n'
    )
    return path


def region_process(name: str, work: Path, config: Path, port: int) -> DaemonProcess:
    """``bootsync-regiond`` called ``name`` on ``port`` with ``config`` (not started)."""
    return DaemonProcess(
        "region",
        ["--config", str(config), "--listen", f"127.0.0.1:{port}"],
        log_path=work / f"{name}.log",
        port=port,
    )


def rack_process(
    name: str, work: Path, data_dir: Path, region: DaemonProcess, secret: Path
) -> DaemonProcess:
    """``bootsync-rackd`` called ``name``, registered with ``region`` only (not started)."""
    port = free_port()
    config = work / f"{name}.toml"
    config.write_text(f'[server]\nhostname = "{name}"\n[log]\nformat = "json"\n')
    return DaemonProcess(
        "rack",
        [
            "--config",
            str(config),
            "--region",
            region.url,
            "--secret-file",
            str(secret),
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data_dir),
        ],
        log_path=work / f"{name}.log",
        port=port,
    )


def config_of(region: DaemonProcess) -> str:
    """The ``--config`` file ``region`` was started with."""
    return region.args[region.args.index("--config") + 1]


async def api(region: DaemonProcess, key: str, method: str, path: str) -> Any:
    """An admin API call to ``region`` that must answer 200: its JSON (or text) body."""
    async with (
        aiohttp.ClientSession(headers=oauth(key)) as s,
        s.request(method, region.url + API + path) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await (resp.json() if resp.content_type == "application/json" else resp.text())


async def served_sha(rack: DaemonProcess, path: str) -> str | None:
    """The sha256 of what ``rack`` serves at ``/images/{path}``; None when it answers no 200."""
    async with aiohttp.ClientSession() as s, s.get(f"{rack.url}/images/{path}") as resp:
        return hashlib.sha256(await resp.read()).hexdigest() if resp.status == 200 else None


def sha_of(stream: SampleStream, path: str) -> str:
    """The sha256 of the upstream file ``path`` of ``stream``."""
    return hashlib.sha256((stream.root / path).read_bytes()).hexdigest()


async def racks_serve(cluster: Cluster, sha: str) -> bool:
    """Whether both racks serve the squashfs with ``sha``."""
    return [await served_sha(r, SQUASHFS) for r in cluster.racks] == [sha] * len(cluster.racks)


async def resources(key: str, region: DaemonProcess) -> list[dict[str, Any]]:
    """``boot-resources read`` on ``region``, each resource read whole, sorted by id."""
    listing = await api(region, key, "GET", "/boot-resources/")
    return [
        await api(region, key, "GET", f"/boot-resources/{r['id']}/")
        for r in sorted(listing, key=lambda r: r["id"])
    ]


async def sources_and_selections(key: str, region: DaemonProcess) -> list[Any]:
    """``boot-sources read`` on ``region`` and each source's ``boot-source-selections read``."""
    sources = await api(region, key, "GET", "/boot-sources/")
    return [
        sources,
        *[
            await api(region, key, "GET", f"/boot-sources/{s['id']}/selections/")
            for s in sorted(sources, key=lambda s: s["id"])
        ],
    ]


async def all_complete(key: str, region: DaemonProcess) -> bool:
    """Whether ``region`` lists resources and every set of each is complete."""
    details = await resources(key, region)
    return bool(details) and all(
        s.get("complete") is not False for d in details for s in d.get("sets", {}).values()
    )


def after(
    region: DaemonProcess, name: str, seen: int, match: Callable[[dict[str, Any]], bool]
) -> Callable[[], bool]:
    """A check: ``region`` logged an event ``name`` matching ``match`` past its first ``seen``."""
    return lambda: any(match(e) for e in region.events(name)[seen:])


async def first_import_done(cluster: Cluster) -> None:
    """Wait until A's start-up import ended; it succeeded."""
    await cluster.a.wait_for_event("import_finished", timeout=60)
    assert cluster.a.events("import_finished")[0]["outcome"] == "ok"


@pytest.fixture
async def cluster(
    request: pytest.FixtureRequest,
    *,
    postgres_server: PostgresServer,
    fake_upstream: FakeUpstream,
    stream: SampleStream,
    data_dir: Path,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    """Regions A and B on a fresh database (A imports at start) and racks on B (two, or
    the number the test gives as the fixture's indirect parameter), all started."""
    racks = getattr(request, "param", 2)
    fake_upstream.serve_directory(stream.root)
    url = await postgres_server.new_database()
    regions = {}
    for name in ("region-a", "region-b"):
        port = free_port()
        config = region_config(
            tmp_path / f"{name}.toml",
            data_dir / name,
            upstream=fake_upstream,
            stream=stream,
            database_url=url,
            name=name,
            port=port,
        )
        regions[name] = region_process(name, tmp_path, config, port)
    built = Cluster(regions=regions, racks=[], key="", database_url=url)
    try:
        # A is up first: its start-up tick claims the interval and imports; B's skips.
        await built.a.start(timeout=START_S)
        built.key, _ = await asyncio.gather(
            bootsync("apikey", "--username", "admin", "--admin", "--config", config_of(built.a)),
            built.b.start(timeout=START_S),
        )
        secret = tmp_path / "rack-secret"  # the cluster's, read through B
        secret.write_text(await bootsync("rack-secret", "--config", config_of(built.b)) + "\n")
        built.racks = [
            rack_process(f"rack-{i}", tmp_path, data_dir / f"rack-{i}", built.b, secret)
            for i in range(1, racks + 1)
        ]
        await asyncio.gather(
            *(rack.start(ready_path="/livez", timeout=START_S) for rack in built.racks)
        )
        yield built
    finally:
        for daemon in (*built.racks, *built.regions.values()):
            if daemon.proc is not None:
                await daemon.stop()


async def test_racks_of_region_b_serve_what_region_a_imported_and_both_answer_alike(
    cluster: Cluster, stream: SampleStream, fake_upstream: FakeUpstream
) -> None:
    """B fetches A's blobs from A, its racks serve them, and both regions answer reads alike."""
    await first_import_done(cluster)
    assert not cluster.b.events("import_finished")  # B imported nothing itself
    await eventually(
        lambda: racks_serve(cluster, sha_of(stream, OLD_SQUASHFS)),
        "the squashfs on both racks of region B",
        timeout=60,
        pause=0.2,
    )
    # Upstream sent the squashfs once: to A. B took it from A.
    size = (stream.root / OLD_SQUASHFS).stat().st_size
    assert fake_upstream.served_bytes(OLD_SQUASHFS) == size

    async def alike() -> bool:  # the same database: the same answers once B holds the blobs
        a, b = [
            (await sources_and_selections(cluster.key, r), await resources(cluster.key, r))
            for r in (cluster.a, cluster.b)
        ]
        return a == b and await all_complete(cluster.key, cluster.b)

    await eventually(alike, "identical reads on A and B", timeout=30, pause=0.2)
    listing = await api(cluster.a, cluster.key, "GET", "/rackcontrollers/")
    assert {r["hostname"] for r in listing} == {"rack-1", "rack-2"}  # A lists B's racks too


async def test_an_import_through_region_a_reaches_region_bs_racks_on_the_event(
    cluster: Cluster, fake_upstream: FakeUpstream, newer_stream: SampleStream, stream: SampleStream
) -> None:
    """A new upstream version imported through A is pulled by B's racks on B's event, not a timer."""
    await first_import_done(cluster)
    await eventually(
        lambda: racks_serve(cluster, sha_of(stream, OLD_SQUASHFS)),
        "the first import on the racks",
        timeout=60,
        pause=0.2,
    )
    pulls = [len(r.events("pull_finished")) for r in cluster.racks]
    fake_upstream.serve_directory(newer_stream.root)
    assert await api(cluster.a, cluster.key, "POST", "/boot-resources/?op=import")
    await cluster.a.wait_for_event("import_finished", count=2, timeout=60)
    assert cluster.a.events("import_finished")[1]["outcome"] == "ok"
    await eventually(
        lambda: racks_serve(cluster, sha_of(newer_stream, NEW_SQUASHFS)),
        "the new squashfs on B's racks",
        timeout=30,
        pause=0.2,
    )
    for rack, seen in zip(cluster.racks, pulls, strict=True):
        fetched = [e for e in rack.events("pull_finished")[seen:] if e["files_fetched"] > 0]
        assert fetched
        assert "snapshot" in fetched[-1]["reason"].split(",")  # B's event, not the timer
    # Upstream served the new squashfs once (to A); B took it from A.
    size = (newer_stream.root / NEW_SQUASHFS).stat().st_size
    assert fake_upstream.served_bytes(NEW_SQUASHFS) == size
    assert not cluster.b.events("import_finished")
    # B kept serving the previous images until it held the new ones: never an empty stream.
    assert [e["products"] for e in cluster.b.events("stream_published") if not e["products"]] == []


async def test_region_b_finishes_the_import_of_a_region_a_killed_mid_import(
    cluster: Cluster, fake_upstream: FakeUpstream, newer_stream: SampleStream
) -> None:
    """kill -9 of the importing region: B takes the expired lease and finishes the import."""
    await first_import_done(cluster)
    taken = len(cluster.b.events("lease_taken"))
    fake_upstream.serve_directory(newer_stream.root)
    fake_upstream.drip(NEW_SQUASHFS, nbytes=1024, every_s=0.2, times=1)  # A gets stuck in it
    assert await api(cluster.a, cluster.key, "POST", "/boot-resources/?op=import")
    await eventually(
        lambda: fake_upstream.served_bytes(NEW_SQUASHFS) > 0, "A in the squashfs", timeout=60
    )  # the drip (times=1) is A's
    assert cluster.a.proc is not None
    cluster.a.proc.send_signal(signal.SIGKILL)
    await cluster.a.proc.wait()
    await eventually(
        after(cluster.b, "lease_taken", taken, lambda e: e["lease"] == "import"),
        "B taking the import lease",
        timeout=LEASE_S * 5,
        pause=0.1,
    )
    assert cluster.b.events("lease_expired")[-1]["holder"] == "region-a"
    assert cluster.b.events("import_resumed")
    finished = await cluster.b.wait_for_event("import_finished", timeout=60)
    assert finished[-1]["outcome"] == "ok"
    await eventually(
        lambda: racks_serve(cluster, sha_of(newer_stream, NEW_SQUASHFS)),
        "the new squashfs on B's racks",
        timeout=30,
        pause=0.2,
    )


@pytest.mark.parametrize("cluster", [0], indirect=True)  # no racks
async def test_a_postgresql_outage_mid_import_ends_it_cleanly_and_the_import_then_succeeds(
    cluster: Cluster,
    postgres_server: PostgresServer,
    fake_upstream: FakeUpstream,
    newer_stream: SampleStream,
) -> None:
    """The database going away for longer than the lease cancels the import; once it is
    back, the import still asked for is run to success by a region of the cluster."""
    await first_import_done(cluster)
    fake_upstream.serve_directory(newer_stream.root)
    fake_upstream.drip(NEW_SQUASHFS, nbytes=1024, every_s=0.2, times=1)
    assert await api(cluster.a, cluster.key, "POST", "/boot-resources/?op=import")
    await eventually(
        lambda: fake_upstream.served_bytes(NEW_SQUASHFS) > 0, "A in the squashfs", timeout=60
    )  # the drip (times=1) is A's
    seen = {name: len(r.events("import_finished")) for name, r in cluster.regions.items()}
    await asyncio.to_thread(postgres_server.halt)
    try:
        ended = await cluster.a.wait_for_event("import_finished", count=2, timeout=LEASE_S * 5)
    finally:
        await asyncio.to_thread(postgres_server.resume)
    assert ended[-1]["outcome"] in {"cancelled", "failed"}
    assert [e["reason"] for e in cluster.a.events("lease_lost")] == ["not_renewed"]
    seen["region-a"] += 1

    def imported_again() -> bool:
        return any(
            e["outcome"] == "ok"
            for name, r in cluster.regions.items()
            for e in r.events("import_finished")[seen[name] :]
        )

    await eventually(imported_again, "a successful import after the outage", timeout=60, pause=0.2)

    async def both_complete() -> bool:  # both regions answer from the database again
        return all([await all_complete(cluster.key, r) for r in cluster.regions.values()])

    await eventually(both_complete, "complete sets on both regions", timeout=30, pause=0.2)


async def test_db_copy_moves_a_sqlite_region_to_postgresql_with_the_same_api_answers(
    postgres_server: PostgresServer,
    fake_upstream: FakeUpstream,
    stream: SampleStream,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    """A region that imported on SQLite, stopped, copied with ``bootsync db copy`` and started
    on PostgreSQL answers boot-sources, selections and boot-resources reads as before."""
    fake_upstream.serve_directory(stream.root)
    port = free_port()
    config = region_config(
        tmp_path / "regiond.toml", data_dir, upstream=fake_upstream, stream=stream
    )
    region = region_process("regiond", tmp_path, config, port)
    await region.start(timeout=START_S)
    try:
        await region.wait_for_event("import_finished", timeout=60)
        key = await bootsync("apikey", "--username", "admin", "--admin", "--config", str(config))
        await eventually(lambda: all_complete(key, region), "complete sets", timeout=30, pause=0.2)
        before = (await sources_and_selections(key, region), await resources(key, region))
    finally:
        assert await region.stop() == 0
    target = await postgres_server.new_database()
    copied = await bootsync(
        "db", "copy", "--from", f"sqlite://{data_dir}/region.db", "--to", target
    )
    assert "boot_sources" in copied
    region_config(config, data_dir, upstream=fake_upstream, stream=stream, database_url=target)
    moved = region.again()
    await moved.start(timeout=START_S)
    try:
        assert (await sources_and_selections(key, moved), await resources(key, moved)) == before
    finally:
        await moved.stop()
