"""The regions of the cluster: each joins (upserts its ``regions`` row) and heartbeats.

:func:`join` records this region's name, URL and start time; the heartbeat task
of :class:`ClusterMember` then updates ``last_seen`` every ``heartbeat_s``. A
region is live while ``last_seen`` is at most three heartbeats old
(:func:`live_regions`). A heartbeat the database refuses is logged
(``region_heartbeat_failed``) and the next one tries again; the database's
state is what :class:`~region.cluster.health.DatabaseHealth` reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.errors import error_text
from common.ops.logging import get_logger
from region.cluster.health import DatabaseHealth
from region.cluster.identity import LIVE_HEARTBEATS, RegionIdentity
from region.db.connection import Database, Row
from region.db.timestamps import now_iso

__all__ = ["ClusterMember", "Region", "join", "list_regions", "live_regions", "record_heartbeat"]

log = get_logger("cluster")

_COLUMNS = "id, name, url, started_at, last_seen"


@dataclass(frozen=True)
class Region:
    """One row of ``regions``: a region that joined, and when it was last heard of."""

    id: int
    name: str
    url: str
    started_at: str
    last_seen: str


def _region(row: Row) -> Region:
    return Region(
        id=int(row["id"]),
        name=str(row["name"]),
        url=str(row["url"]),
        started_at=str(row["started_at"]),
        last_seen=str(row["last_seen"]),
    )


def _iso(when: datetime) -> str:
    return when.replace(tzinfo=None).isoformat(timespec="microseconds")


async def join(db: Database, name: str, url: str, *, now: str | None = None) -> Region:
    """Insert or update the row of region ``name`` (its URL, started and seen now)."""
    stamp = now or now_iso()
    async with db.write() as conn:
        cur = await conn.execute(
            "INSERT INTO regions (name, url, started_at, last_seen) VALUES (?, ?, ?, ?)"  # noqa: S608
            " ON CONFLICT (name) DO UPDATE SET url = excluded.url,"
            " started_at = excluded.started_at, last_seen = excluded.last_seen"
            f" RETURNING {_COLUMNS}",
            (name, url, stamp, stamp),
        )
        row = await cur.fetchone()
    assert row is not None  # RETURNING always gives the row
    return _region(row)


async def record_heartbeat(db: Database, region_id: int, *, now: str | None = None) -> bool:
    """Set ``last_seen`` of region ``region_id`` to now; False if its row is gone."""
    async with db.write() as conn:
        cur = await conn.execute(
            "UPDATE regions SET last_seen = ? WHERE id = ?", (now or now_iso(), region_id)
        )
    return cur.rowcount > 0


async def list_regions(db: Database) -> list[Region]:
    """Every region that ever joined, by name."""
    async with db.read() as conn:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM regions ORDER BY name")  # noqa: S608
        rows = await cur.fetchall()
    return [_region(row) for row in rows]


async def live_regions(
    db: Database, *, now: datetime | None = None, window_s: float = LIVE_HEARTBEATS * 10.0
) -> list[Region]:
    """The regions whose last heartbeat is at most ``window_s`` old at ``now``, by name."""
    at = now if now is not None else datetime.fromisoformat(now_iso())  # naive UTC
    cutoff = _iso(at - timedelta(seconds=window_s))
    async with db.read() as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM regions WHERE last_seen >= ? ORDER BY name",  # noqa: S608
            (cutoff,),
        )
        rows = await cur.fetchall()
    return [_region(row) for row in rows]


class ClusterMember:
    """This region in its cluster (``ctx.cluster``): its row, its heartbeat, its peers.

    Made by :meth:`join`; :meth:`start` runs the heartbeat, :meth:`close` stops it.
    """

    def __init__(self, db: Database, identity: RegionIdentity, region: Region) -> None:
        self.db = db
        self.identity = identity
        self.region_id = region.id
        self.name = region.name
        self.url = region.url
        self.health = DatabaseHealth(db)
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def join(cls, db: Database, identity: RegionIdentity) -> ClusterMember:
        """Upsert this region's row (logged ``region_joined``); the heartbeat is not started."""
        region = await join(db, identity.name, identity.url)
        log.info("region_joined", region=region.name, region_id=region.id, url=region.url)
        return cls(db, identity, region)

    async def live_regions(self) -> list[Region]:
        """The regions of the cluster heard of within the last three heartbeats (this one too)."""
        return await live_regions(self.db, window_s=self.identity.live_window_s)

    def start(self) -> None:
        """Start the heartbeat task (call on the event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._beat())

    async def close(self) -> None:
        """Stop the heartbeat."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def beat(self) -> bool:
        """One heartbeat: ``last_seen`` now (the row made again if gone); False if it failed."""
        try:
            async with asyncio.timeout(self.identity.heartbeat_s):
                if not await record_heartbeat(self.db, self.region_id):
                    region = await join(self.db, self.name, self.url)  # deleted meanwhile
                    self.region_id = region.id
                    log.info(
                        "region_joined", region=region.name, region_id=region.id, url=region.url
                    )
        except Exception as exc:  # noqa: BLE001 - whichever database error it is, it is logged
            reason = error_text(exc)
            log.warning("region_heartbeat_failed", region=self.name, error=reason)
            self.health.record(False, reason)
            return False
        self.health.record(True)
        return True

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.identity.heartbeat_s)
            await self.beat()
