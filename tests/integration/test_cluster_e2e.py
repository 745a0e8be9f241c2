"""Two real region processes on one real PostgreSQL, and two real racks, on 127.0.0.1.

The racks register with region B only; the imports are started through region A.
What the cluster promises is checked from the outside: the racks hear of A's
import at once (through B), both regions answer the API alike, a region killed
in the middle of an import is replaced by the other, and a PostgreSQL restart
during an import ends that import cleanly.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.mirror.samplestream import SampleStream
from tests.fakes.daemons import DaemonProcess, admin_key, bootsync, free_port, oauth
from tests.fakes.postgres import PostgresServer, postgres_server
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually

__all__ = ["postgres_server"]  # the session fixture

API = "/MAAS/api/2.0"
FILE_SIZE = 64 << 10
SQUASHFS = "ubuntu/amd64/ga-24.04/noble/stable/squashfs"
NEW_SQUASHFS = "noble/amd64/20250815/squashfs"

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


def region_process(
    name: str,
    work: Path,
    data_dir: Path,
    *,
    database_url: str,
    upstream: FakeUpstream,
    stream: SampleStream,
) -> DaemonProcess:
    """``bootsync-regiond`` called ``name`` on a free port, on the shared database (not started)."""
    port = free_port()
    config = work / f"{name}.toml"
    config.write_text(
        "[import]\n"
        f'default_source_url = "{upstream.url("/")}"\n'
        f'default_keyring = "{stream.keyring}"\n'
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


async def resources(cluster: Cluster, region: DaemonProcess) -> list[dict[str, Any]]:
    """``boot-resources read`` on ``region``, each resource read whole, sorted by id."""
    listing = await api(region, cluster.key, "GET", "/boot-resources/")
    return [
        await api(region, cluster.key, "GET", f"/boot-resources/{r['id']}/")
        for r in sorted(listing, key=lambda r: r["id"])
    ]


async def all_synced_everywhere(cluster: Cluster) -> bool:
    """Whether every resource is Synced on both regions and the racks report synced."""
    for region in cluster.regions.values():
        listed = await api(region, cluster.key, "GET", "/boot-resources/")
        details = [
            await api(region, cluster.key, "GET", f"/boot-resources/{r['id']}/") for r in listed
        ]
        if not details or any(
            s.get("complete") is False for d in details for s in d.get("sets", {}).values()
        ):
            return False
    racks = await api(cluster.b, cluster.key, "GET", "/rackcontrollers/")
    return len(racks) == len(cluster.racks)


@pytest.fixture
async def cluster(
    postgres_server: PostgresServer,
    fake_upstream: FakeUpstream,
    stream: SampleStream,
    data_dir: Path,
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    """Regions A and B on a fresh database (A imports at start), two racks on B, all started."""
    fake_upstream.serve_directory(stream.root)
    url = await postgres_server.new_database()
    regions = {
        name: region_process(
            name, tmp_path, data_dir / name, database_url=url, upstream=fake_upstream, stream=stream
        )
        for name in ("region-a", "region-b")
    }
    started: list[DaemonProcess] = []
    built = Cluster(regions=regions, racks=[], key="", database_url=url)
    try:
        for region in regions.values():
            await region.start()
            started.append(region)
        key = await admin_key(data_dir / "region-a")
        secret = tmp_path / "rack-secret"
        secret.write_text(
            await bootsync("rack-secret", "--data-dir", str(data_dir / "region-b")) + "\n"
        )
        built.key = key
        for name in ("rack-1", "rack-2"):
            rack = rack_process(name, tmp_path, data_dir / name, regions["region-b"], secret)
            await rack.start(ready_path="/livez")
            started.append(rack)
            built.racks.append(rack)
        yield built
    finally:
        for daemon in (*built.racks, *built.regions.values()):
            if daemon.proc is not None:
                await daemon.stop()


async def test_racks_on_region_b_serve_what_region_a_imported_byte_identical(
    cluster: Cluster, stream: SampleStream
) -> None:
    """B fetches A's blobs from A and its racks serve them: the cluster has one stream."""
    expected = hashlib.sha256(
        (stream.root / "noble/amd64/20250718/squashfs").read_bytes()
    ).hexdigest()

    async def racks_have_it() -> bool:
        return [await served_sha(r, SQUASHFS) for r in cluster.racks] == [expected] * 2

    await eventually(racks_have_it, "the squashfs on both racks of region B", timeout=90, pause=0.3)
    listing = await api(cluster.a, cluster.key, "GET", "/rackcontrollers/")
    assert {r["hostname"] for r in listing} == {"rack-1", "rack-2"}  # A lists B's racks too


async def test_an_import_through_region_a_reaches_region_bs_racks_at_once(
    cluster: Cluster, fake_upstream: FakeUpstream, newer_stream: SampleStream, stream: SampleStream
) -> None:
    """A new upstream version imported through A is pulled by B's racks on B's event, not a timer."""
    first = hashlib.sha256((stream.root / "noble/amd64/20250718/squashfs").read_bytes()).hexdigest()

    async def racks_have(sha: str) -> bool:
        return [await served_sha(r, SQUASHFS) for r in cluster.racks] == [sha] * 2

    await eventually(
        lambda: racks_have(first), "the first import on the racks", timeout=90, pause=0.3
    )
    upstream_before = fake_upstream.served_bytes()
    fake_upstream.serve_directory(newer_stream.root)
    await cluster.a.wait_for_event("import_finished")
    done = len(cluster.a.events("import_finished"))
    assert await api(cluster.a, cluster.key, "POST", "/boot-resources/?op=import")
    await cluster.a.wait_for_event("import_finished", count=done + 1, timeout=90)
    expected = hashlib.sha256((newer_stream.root / NEW_SQUASHFS).read_bytes()).hexdigest()
    await eventually(
        lambda: racks_have(expected), "the new squashfs on B's racks", timeout=60, pause=0.3
    )
    for rack in cluster.racks:
        reasons = [e["reason"] for e in rack.events("pull_finished") if e["files_fetched"] > 0]
        assert "snapshot" in reasons[-1]
    new_bytes = (newer_stream.root / NEW_SQUASHFS).stat().st_size
    # Upstream served the new squashfs once (to A); B took it from A.
    assert fake_upstream.served_bytes(NEW_SQUASHFS) == new_bytes
    assert fake_upstream.served_bytes() > upstream_before


async def test_both_regions_answer_boot_resources_read_identically(cluster: Cluster) -> None:
    """Once B holds what A imported, the two regions give the same answers, ids included."""
    await eventually(
        lambda: all_synced_everywhere(cluster), "images on both regions", timeout=90, pause=0.3
    )

    async def same() -> bool:
        return await resources(cluster, cluster.a) == await resources(cluster, cluster.b)

    await eventually(same, "identical boot-resources on both regions", timeout=30, pause=0.3)


async def test_region_b_finishes_the_import_of_a_region_a_killed_mid_import(
    cluster: Cluster, fake_upstream: FakeUpstream, newer_stream: SampleStream
) -> None:
    """kill -9 of the importing region: B takes the expired lease and finishes the import."""
    await cluster.a.wait_for_event("import_finished")
    fake_upstream.serve_directory(newer_stream.root)
    fake_upstream.drip(NEW_SQUASHFS, nbytes=4096, every_s=0.05, times=1)  # A gets stuck in it
    assert await api(cluster.a, cluster.key, "POST", "/boot-resources/?op=import")
    await cluster.a.wait_for_event("downloads_started", timeout=60)
    assert cluster.a.proc is not None
    cluster.a.proc.send_signal(signal.SIGKILL)
    await cluster.a.proc.wait()
    taken = await cluster.b.wait_for_event("lease_taken", timeout=60)
    assert taken
    finished = await cluster.b.wait_for_event("import_finished", timeout=90)
    assert finished[-1]["outcome"] == "ok"
    expected = hashlib.sha256((newer_stream.root / NEW_SQUASHFS).read_bytes()).hexdigest()

    async def racks_have_it() -> bool:
        return [await served_sha(r, SQUASHFS) for r in cluster.racks] == [expected] * 2

    await eventually(racks_have_it, "the new squashfs on B's racks", timeout=60, pause=0.3)


async def test_a_postgresql_restart_mid_import_ends_it_cleanly_and_the_next_succeeds(
    cluster: Cluster,
    postgres_server: PostgresServer,
    fake_upstream: FakeUpstream,
    newer_stream: SampleStream,
) -> None:
    """The database going away during an import fails that import; after it returns one succeeds."""
    await cluster.a.wait_for_event("import_finished")
    done = len(cluster.a.events("import_finished"))
    fake_upstream.serve_directory(newer_stream.root)
    fake_upstream.drip(NEW_SQUASHFS, nbytes=8192, every_s=0.05, times=1)
    assert await api(cluster.a, cluster.key, "POST", "/boot-resources/?op=import")
    await cluster.a.wait_for_event("downloads_started", timeout=60)
    postgres_server.restart()
    ended = await cluster.a.wait_for_event("import_finished", count=done + 1, timeout=90)
    assert ended[-1]["outcome"] in {"failed", "cancelled", "ok"}

    async def imported_again() -> bool:
        runs = [e for r in cluster.regions.values() for e in r.events("import_finished")]
        return any(e["outcome"] == "ok" for e in runs[done + 1 :]) or (
            await api(cluster.a, cluster.key, "POST", "/boot-resources/?op=import") is not None
            and False
        )

    await eventually(imported_again, "a successful import after the restart", timeout=120, pause=1)
