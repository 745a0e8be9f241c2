"""Leases, the regions table and the hourly slot, on both engines, two regions per database.

Each "region" is a Database handle of its own on one SQLite file or one
PostgreSQL database (tests/fakes/postgres.py), as two region processes would
hold; times are passed explicitly where expiry matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from region.cluster import lease as leases
from region.cluster.identity import RegionIdentity
from region.cluster.lease import IMPORT, ImportLease, claim_auto_import
from region.cluster.registry import ClusterMember, join, live_regions, record_heartbeat
from region.db.connection import Database, open_db
from region.db.timestamps import now_iso
from region.images.scheduler import AutoImport
from tests.fakes.postgres import PostgresServer

Events = list[Any]


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> PostgresServer | None:
    """The engine under test: None for SQLite, else the session's PostgreSQL server."""
    if request.param == "sqlite":
        return None
    started: PostgresServer = request.getfixturevalue("postgres_server")
    return started


@pytest.fixture
async def target(server: PostgresServer | None, tmp_path: Path) -> str | Path:
    """A fresh database on the engine under test."""
    if server is None:
        return tmp_path / "region.db"
    return await server.new_database()


@pytest.fixture
async def two(target: str | Path) -> AsyncIterator[tuple[Database, Database]]:
    """Two handles on one database: region A's and region B's."""
    async with open_db(target, readers=1) as a, open_db(target, readers=1) as b:
        yield a, b


def now() -> datetime:
    """The current time as the database stores it (naive UTC)."""
    return datetime.fromisoformat(now_iso())


def identity(name: str, *, heartbeat_s: float = 0.05, lease_s: float = 0.3) -> RegionIdentity:
    """A region on fast timings."""
    return RegionIdentity(
        name=name, url=f"http://{name}:5240", heartbeat_s=heartbeat_s, lease_s=lease_s
    )


async def test_a_held_lease_is_refused_to_another_region_until_it_expires(
    two: tuple[Database, Database], log_events: Events
) -> None:
    """B cannot take A's live lease; once expired B takes it, A's renewal then fails."""
    a, b = two
    taken = await leases.take(a, IMPORT, "region-a", seconds=30, pending="api:admin")
    assert taken is not None
    assert taken.pending == "api:admin"
    assert await leases.take(b, IMPORT, "region-b", seconds=30) is None
    assert await leases.renew(a, IMPORT, "region-a", seconds=30)
    later = now() + timedelta(seconds=31)
    took = await leases.take(b, IMPORT, "region-b", seconds=30, now=later)
    assert took is not None
    assert (took.holder, took.pending) == ("region-b", "api:admin")  # the import stays asked for
    assert not await leases.renew(a, IMPORT, "region-a", seconds=30)
    names = [e["event"] for e in log_events if e["event"].startswith("lease_")]
    assert names == ["lease_taken", "lease_renewed", "lease_expired", "lease_taken"]
    expired = next(e for e in log_events if e["event"] == "lease_expired")
    assert expired["holder"] == "region-a"


async def test_release_clears_the_pending_import_unless_it_is_handed_over(
    two: tuple[Database, Database],
) -> None:
    """A release at the end clears ``pending``; a hand-over keeps it for B's takeover only."""
    a, b = two
    lease_b = ImportLease(b, identity("region-b"))
    await leases.take(a, IMPORT, "region-a", seconds=30, pending="auto-import", force=True)
    assert not await leases.release(b, IMPORT, "region-b")  # not B's to release
    assert await leases.release(a, IMPORT, "region-a", keep_pending=True)
    taken = await lease_b.take_over()
    assert taken is not None
    assert (taken.holder, taken.pending, taken.force) == ("region-b", "auto-import", True)
    assert await leases.release(b, IMPORT, "region-b")
    assert await lease_b.take_over() is None  # nothing pending: nothing to take over
    stored = await leases.read_lease(a, IMPORT)
    assert stored is not None
    assert (stored.holder, stored.pending, stored.force) == (None, None, False)


async def test_the_watcher_takes_over_an_expired_pending_lease_and_resumes_the_import(
    two: tuple[Database, Database], log_events: Events
) -> None:
    """A dead holder's lease is left alone while live, then taken and resumed once expired."""
    a, b = two
    await leases.take(a, IMPORT, "region-a", seconds=0.3, pending="api:admin")
    lease_b = ImportLease(b, identity("region-b"))
    resumed: list[tuple[str, bool]] = []
    assert not await lease_b.watch_once(lambda: False, lambda p, f: resumed.append((p, f)))
    assert lease_b.held_elsewhere()  # is-importing, cluster-wide, from the cached read
    await asyncio.sleep(0.35)
    assert await lease_b.watch_once(lambda: False, lambda p, f: resumed.append((p, f)))
    assert resumed == [("api:admin", False)]
    assert lease_b.held_here()
    assert not lease_b.held_elsewhere()
    assert [e["event"] for e in log_events if e["event"] in ("lease_expired", "lease_taken")][
        -2:
    ] == ["lease_expired", "lease_taken"]


async def test_a_busy_region_does_not_take_over(two: tuple[Database, Database]) -> None:
    """While an import runs here, the watcher only reads the lease."""
    a, b = two
    await leases.take(a, IMPORT, "region-a", seconds=0.01, pending="api:admin")
    await asyncio.sleep(0.02)
    lease_b = ImportLease(b, identity("region-b"))
    assert not await lease_b.watch_once(lambda: True, lambda p, f: None)
    stored = await leases.read_lease(b, IMPORT)
    assert stored is not None
    assert stored.holder == "region-a"


async def test_keeping_a_lease_ends_lost_once_another_region_takes_it(
    two: tuple[Database, Database], log_events: Events
) -> None:
    """keep() renews every heartbeat and returns ``taken`` when B took the lease."""
    a, b = two
    lease_a = ImportLease(a, identity("region-a"))
    assert await lease_a.acquire("api:admin")
    keeping = asyncio.create_task(lease_a.keep())
    await asyncio.sleep(0.2)  # several renewals, past the first lease period of 0.3 s
    assert not keeping.done()
    assert await leases.take(b, IMPORT, "region-b", seconds=30, now=now() + timedelta(hours=1))
    async with asyncio.timeout(5):
        assert await keeping == "taken"
    lost = next(e for e in log_events if e["event"] == "lease_lost")
    assert (lost["reason"], lost["holder"]) == ("taken", "region-b")


async def test_regions_join_heartbeat_and_drop_out_of_the_live_list(
    two: tuple[Database, Database],
) -> None:
    """join upserts by name (same id), a heartbeat moves last_seen, live_regions windows it."""
    a, b = two
    first = await join(a, "region-a", "http://a:5240", now="2026-01-01T00:00:00.000000")
    again = await join(a, "region-a", "http://a2:5240", now="2026-01-01T00:00:05.000000")
    other = await join(b, "region-b", "http://b:5240", now="2026-01-01T00:00:20.000000")
    assert again.id == first.id != other.id
    assert again.url == "http://a2:5240"
    at = datetime(2026, 1, 1, 0, 0, 30)
    assert [r.name for r in await live_regions(b, now=at, window_s=30)] == [
        "region-a",
        "region-b",
    ]
    assert [r.name for r in await live_regions(b, now=at, window_s=20)] == ["region-b"]
    assert await record_heartbeat(a, first.id, now="2026-01-01T00:00:29.000000")
    assert [r.name for r in await live_regions(b, now=at, window_s=5)] == ["region-a"]
    assert not await record_heartbeat(a, 10_000)


async def test_a_members_heartbeat_keeps_it_live(
    two: tuple[Database, Database], log_events: Events
) -> None:
    """The heartbeat task updates last_seen; both members list each other as live."""
    a, b = two
    member_a = await ClusterMember.join(a, identity("region-a"))
    member_b = await ClusterMember.join(b, identity("region-b"))
    member_a.start()
    try:
        await asyncio.sleep(0.3)  # past B's window of 3 heartbeats: only A beat meanwhile
        assert [r.name for r in await member_b.live_regions()] == ["region-a"]
        assert await member_b.beat()
        assert [r.name for r in await member_a.live_regions()] == ["region-a", "region-b"]
    finally:
        await member_a.close()
    assert [e["region"] for e in log_events if e["event"] == "region_joined"] == [
        "region-a",
        "region-b",
    ]


async def test_the_hourly_slot_goes_to_one_region_per_interval(
    two: tuple[Database, Database],
) -> None:
    """Of two regions ticking together one wins; the winner's next tick wins, the other's not."""
    a, b = two
    at = now()
    won = await asyncio.gather(
        claim_auto_import(a, "region-a", interval_s=3600, now=at),
        claim_auto_import(b, "region-b", interval_s=3600, now=at),
    )
    assert sorted(won) == [False, True]
    winner, loser = ("region-a", "region-b") if won[0] else ("region-b", "region-a")
    db_of = {"region-a": a, "region-b": b}
    halfway = at + timedelta(minutes=30)
    assert not await claim_auto_import(db_of[loser], loser, interval_s=3600, now=halfway)
    early = at + timedelta(seconds=3600 - 1)  # its own next tick, a second early
    assert await claim_auto_import(db_of[winner], winner, interval_s=3600, now=early)
    # The winner dies: its slot expires and the other region's tick claims the next one.
    late = early + timedelta(seconds=3600 + 120)
    assert await claim_auto_import(db_of[loser], loser, interval_s=3600, now=late)


class Recorder:
    """An ImportControl that records the imports started (the scheduler's side is tested)."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, *, reason: str, force: bool = False) -> bool:
        """Record ``reason``; started."""
        self.started.append(reason)
        return True

    def is_importing(self) -> bool:
        """Never importing."""
        return False

    async def wait_idle(self) -> None:
        """Nothing to wait for."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def republish(self, *, reason: str) -> bool:
        """Nothing to publish."""
        return False


async def test_the_scheduler_tick_fires_once_for_two_regions(
    two: tuple[Database, Database], log_events: Events
) -> None:
    """Two regions' schedulers tick at once: one import starts; the other logs and skips."""
    a, b = two
    recorders = [Recorder(), Recorder()]

    async def enabled() -> bool:
        return True

    def claim(db: Database, name: str) -> Callable[[float], Awaitable[bool]]:
        return lambda seconds: claim_auto_import(db, name, interval_s=seconds)

    schedulers = [
        AutoImport(rec, interval_minutes=60, enabled=enabled, claim=claim(db, name))
        for rec, db, name in zip(recorders, (a, b), ("region-a", "region-b"), strict=True)
    ]
    started = await asyncio.gather(*(s.tick() for s in schedulers))
    assert sorted(started) == [False, True]
    assert sorted(len(r.started) for r in recorders) == [0, 1]
    skipped = [e for e in log_events if e["event"] == "auto_import_skipped"]
    assert [e["reason"] for e in skipped] == ["another region ran this interval's import"]
