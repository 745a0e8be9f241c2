"""Named leases in ``cluster_leases``: one holder at a time in the whole cluster.

A lease row holds its ``holder`` (a region name) until ``expires_at`` (naive UTC
text, as region/db/timestamps.py writes); the holder renews it every heartbeat.
Every change is one write transaction, so two regions never both take a lease.

``'import'`` (:class:`ImportLease`): the region that imports holds it while the
import runs; ``pending`` is the reason of the import asked for and not finished.
A holder that dies leaves it to expire with ``pending`` set, and a region's
watcher then takes it over and runs the import again (``lease_expired``,
``lease_taken``). A holder that cannot renew it within ``lease_s`` (the database
unreachable, or another region took it) has lost it (``lease_lost``).

``'auto_import'`` (:func:`claim_slot`): the hourly import's slot. Its
``expires_at`` is when the next run is due; the region whose tick claims an
expired slot runs the import, the others skip it, so it fires once per cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.errors import error_text
from common.ops.logging import get_logger
from region.cluster.identity import RegionIdentity
from region.db.connection import Connection, Database, Row
from region.db.timestamps import now_iso

__all__ = [
    "AUTO_IMPORT",
    "IMPORT",
    "ImportLease",
    "Lease",
    "claim_auto_import",
    "claim_slot",
    "read_lease",
    "release",
    "renew",
    "take",
]

log = get_logger("cluster")

IMPORT = "import"
AUTO_IMPORT = "auto_import"
_COLUMNS = "name, holder, expires_at, pending, force, updated"


@dataclass(frozen=True)
class Lease:
    """One row of ``cluster_leases``."""

    name: str
    holder: str | None
    expires_at: str | None
    pending: str | None = None
    force: bool = False
    updated: str = ""

    def live(self, now: str) -> bool:
        """Whether someone holds it at ``now`` (naive UTC text)."""
        return self.holder is not None and self.expires_at is not None and self.expires_at > now

    def held_by(self, holder: str, now: str) -> bool:
        """Whether ``holder`` holds it at ``now``."""
        return self.live(now) and self.holder == holder


def _lease(row: Row) -> Lease:
    return Lease(
        name=str(row["name"]),
        holder=row["holder"],
        expires_at=row["expires_at"],
        pending=row["pending"],
        force=bool(row["force"]),
        updated=str(row["updated"]),
    )


def _now() -> datetime:
    return datetime.fromisoformat(now_iso())


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="microseconds")


async def _select(conn: Connection, name: str) -> Lease | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM cluster_leases WHERE name = ?", (name,))  # noqa: S608
    row = await cur.fetchone()
    return _lease(row) if row is not None else None


async def read_lease(db: Database, name: str) -> Lease | None:
    """The lease ``name`` as last committed, or None if it was never taken."""
    async with db.read() as conn:
        return await _select(conn, name)


async def take(
    db: Database,
    name: str,
    holder: str,
    *,
    seconds: float,
    pending: str | None = None,
    force: bool = False,
    only_pending: bool = False,
    now: datetime | None = None,
) -> Lease | None:
    """Take lease ``name`` for ``holder`` for ``seconds``; the lease, or None if another holds it.

    It is free when nobody holds it, its holder let it expire, or ``holder``
    holds it already. ``pending`` (with ``force``) records the import asked for;
    None keeps the recorded one. ``only_pending``: take it only if one is recorded
    (a takeover). Logs ``lease_expired`` when taking another holder's expired
    lease and ``lease_taken`` unless ``holder`` already held it.
    """
    at = now or _now()
    stamp = _iso(at)
    async with db.write() as conn:
        before = await _select(conn, name)
        if before is not None and before.live(stamp) and before.holder != holder:
            return None
        if only_pending and (before is None or before.pending is None):
            return None
        after = Lease(
            name=name,
            holder=holder,
            expires_at=_iso(at + timedelta(seconds=seconds)),
            pending=pending if pending is not None else (before.pending if before else None),
            force=force if pending is not None else bool(before and before.force),
            updated=stamp,
        )
        await conn.execute(
            "INSERT INTO cluster_leases (name, holder, expires_at, pending, force, updated)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
            " holder = excluded.holder, expires_at = excluded.expires_at,"
            " pending = excluded.pending, force = excluded.force, updated = excluded.updated",
            (name, holder, after.expires_at, after.pending, int(after.force), stamp),
        )
    if before is not None and before.holder not in (None, holder):
        log.warning("lease_expired", lease=name, holder=before.holder, expired_at=before.expires_at)
    if before is None or not before.held_by(holder, stamp):
        log.info(
            "lease_taken",
            lease=name,
            holder=holder,
            expires_at=after.expires_at,
            pending=after.pending,
        )
    return after


async def renew(
    db: Database, name: str, holder: str, *, seconds: float, now: datetime | None = None
) -> bool:
    """Extend ``holder``'s lease ``name`` by ``seconds`` from now; False if ``holder`` lost it."""
    at = now or _now()
    expires = _iso(at + timedelta(seconds=seconds))
    async with db.write() as conn:
        cur = await conn.execute(
            "UPDATE cluster_leases SET expires_at = ?, updated = ? WHERE name = ? AND holder = ?",
            (expires, _iso(at), name, holder),
        )
    if cur.rowcount > 0:
        log.debug("lease_renewed", lease=name, holder=holder, expires_at=expires)
        return True
    return False


async def release(db: Database, name: str, holder: str, *, keep_pending: bool = False) -> bool:
    """Let go of ``holder``'s lease ``name`` (clearing ``pending`` unless kept); False if not held."""
    clear = "" if keep_pending else ", pending = NULL, force = 0"
    async with db.write() as conn:
        cur = await conn.execute(
            f"UPDATE cluster_leases SET holder = NULL, expires_at = NULL, updated = ?{clear}"  # noqa: S608
            " WHERE name = ? AND holder = ?",
            (now_iso(), name, holder),
        )
    if cur.rowcount > 0:
        log.info("lease_released", lease=name, holder=holder, pending_kept=keep_pending)
        return True
    return False


async def claim_slot(
    db: Database,
    name: str,
    holder: str,
    *,
    next_due: datetime,
    grace_s: float = 0.0,
    now: datetime | None = None,
) -> bool:
    """Claim the periodic slot ``name`` for ``holder`` until ``next_due`` (naive UTC); True if won.

    The slot is free once its ``expires_at`` (the run after the last claimed one)
    is at most ``grace_s`` away, and always to the region that claimed it last
    (its own next tick, or its start after a restart); another region whose tick
    comes while it is not due loses.
    """
    at = now or _now()
    due_by = _iso(at + timedelta(seconds=grace_s))
    async with db.write() as conn:
        before = await _select(conn, name)
        if (
            before is not None
            and before.holder != holder
            and before.expires_at is not None
            and before.expires_at > due_by
        ):
            return False
        await conn.execute(
            "INSERT INTO cluster_leases (name, holder, expires_at, updated) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
            " expires_at = excluded.expires_at, updated = excluded.updated",
            (name, holder, _iso(next_due), _iso(at)),
        )
    log.info("lease_taken", lease=name, holder=holder, expires_at=_iso(next_due), pending=None)
    return True


class ImportLease:
    """The ``'import'`` lease as one region sees it.

    :meth:`refresh` (the watcher, every heartbeat) caches the row, so that
    :meth:`held_elsewhere` answers without the database; :meth:`acquire`,
    :meth:`keep` and :meth:`release` are the holder's side; :meth:`watch` takes
    over an expired lease of an unfinished import.
    """

    def __init__(self, db: Database, identity: RegionIdentity, *, name: str = IMPORT) -> None:
        self._db = db
        self.identity = identity
        self.name = name
        self.cached: Lease | None = None

    @property
    def holder(self) -> str:
        """This region's name, as the lease records its holder."""
        return self.identity.name

    def held_elsewhere(self) -> bool:
        """Whether, as last read, another region holds the lease (it imports)."""
        lease = self.cached
        return lease is not None and lease.live(now_iso()) and lease.holder != self.holder

    def held_here(self) -> bool:
        """Whether, as last read or renewed, this region holds the lease."""
        return self.cached is not None and self.cached.held_by(self.holder, now_iso())

    async def refresh(self) -> Lease | None:
        """Read the lease into the cache; the lease."""
        self.cached = await read_lease(self._db, self.name)
        return self.cached

    async def acquire(self, reason: str, *, force: bool = False) -> bool:
        """Take the lease for an import asked for with ``reason``; False if another region holds it."""
        taken = await take(
            self._db,
            self.name,
            self.holder,
            seconds=self.identity.lease_s,
            pending=reason,
            force=force,
        )
        if taken is None:
            await self.refresh()
            return False
        self.cached = taken
        return True

    async def keep(self) -> str:
        """Renew the lease every heartbeat; returns (logged ``lease_lost``) once it is lost.

        Lost: the lease is no longer this region's (taken after it expired), or
        no renewal succeeded for ``lease_s`` (then another region may take it).
        Cancel the task to stop renewing. The reason it was lost.
        """
        period, length = self.identity.heartbeat_s, self.identity.lease_s
        deadline = time.monotonic() + length
        while True:
            await asyncio.sleep(period)
            started = time.monotonic()
            left = deadline - started
            error = ""
            if left > 0:
                try:
                    async with asyncio.timeout(left):
                        kept = await renew(self._db, self.name, self.holder, seconds=length)
                except Exception as exc:  # noqa: BLE001 - any failure to renew counts the same
                    error = error_text(exc)
                else:
                    if not kept:
                        current = await self._quietly_refresh()
                        holder = current.holder if current is not None else None
                        log.error("lease_lost", lease=self.name, reason="taken", holder=holder)
                        return "taken"
                    deadline = started + length
                    self._extend(length)
                    continue
            if time.monotonic() >= deadline:
                log.error(
                    "lease_lost",
                    lease=self.name,
                    reason="not_renewed",
                    error=error or f"not renewed within {length:g} s",
                )
                return "not_renewed"

    async def release(self, *, keep_pending: bool = False) -> bool:
        """Let go of the lease (best effort: an unreachable database lets it expire instead)."""
        try:
            released = await release(self._db, self.name, self.holder, keep_pending=keep_pending)
        except Exception as exc:  # noqa: BLE001 - the lease then expires by itself
            log.warning("lease_release_failed", lease=self.name, error=error_text(exc))
            return False
        if self.cached is not None and self.cached.holder == self.holder:
            self.cached = None
        return released

    async def take_over(self) -> Lease | None:
        """Take the lease if it is free or expired and an unfinished import is recorded."""
        taken = await take(
            self._db, self.name, self.holder, seconds=self.identity.lease_s, only_pending=True
        )
        if taken is not None:
            self.cached = taken
        return taken

    async def watch(self, busy: Callable[[], bool], resume: Callable[[str, bool], object]) -> None:
        """Every heartbeat: read the lease; if an import is pending and nobody holds the
        lease, take it and ``resume(pending reason, force)`` (unless ``busy()`` here).

        Runs until cancelled; database errors are logged by the heartbeat, not here.
        """
        while True:
            await self.watch_once(busy, resume)
            await asyncio.sleep(self.identity.heartbeat_s)

    async def watch_once(
        self, busy: Callable[[], bool], resume: Callable[[str, bool], object]
    ) -> bool:
        """One round of :meth:`watch`; True if it took the lease over."""
        try:
            lease = await self.refresh()
            if busy() or lease is None or lease.pending is None:
                return False
            if lease.live(now_iso()) and lease.holder != self.holder:
                return False
            taken = await self.take_over()
        except Exception:  # noqa: BLE001 - the database is down: try again next heartbeat
            return False
        if taken is None or busy():
            return False
        resume(taken.pending or "takeover", taken.force)
        return True

    async def _quietly_refresh(self) -> Lease | None:
        try:
            return await self.refresh()
        except Exception:  # noqa: BLE001 - only used to name the new holder in a log event
            return None

    def _extend(self, seconds: float) -> None:
        if self.cached is not None and self.cached.holder == self.holder:
            expires = _iso(_now() + timedelta(seconds=seconds))
            self.cached = Lease(
                name=self.name,
                holder=self.holder,
                expires_at=expires,
                pending=self.cached.pending,
                force=self.cached.force,
                updated=self.cached.updated,
            )


AUTO_IMPORT_GRACE_S = 60.0
"""A tick at most this early (or a tenth of the interval, if less) still finds its slot due."""


async def claim_auto_import(
    db: Database, holder: str, *, interval_s: float, now: datetime | None = None
) -> bool:
    """Claim this interval's hourly import for ``holder``; False if a region already ran it."""
    at = now or _now()
    return await claim_slot(
        db,
        AUTO_IMPORT,
        holder,
        next_due=at + timedelta(seconds=interval_s),
        grace_s=min(AUTO_IMPORT_GRACE_S, interval_s / 10),
        now=at,
    )
