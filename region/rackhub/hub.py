"""Rack controllers at the region: the registry in SQLite and the live event hub.

The registry (``racks`` table) keeps what each rack said about itself and its
last status report; it survives region restarts. :class:`RackHub` holds what
only the running region knows: the shared secret racks authenticate with and
the event streams they hold open. A rack is *connected* while at least one
of its event streams is open.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from common.ops.logging import get_logger
from common.rackproto import KEEPALIVE_S, RackImage, RackState, RackStatus, Registration
from common.storage.snapshot import PublishedSnapshot, SnapshotPublisher
from region.api.http import now_iso
from region.db.connection import transaction
from region.rackhub.secret import aload_or_create_secret

log = get_logger("racks")

SYSTEM_ID_ALPHABET = string.ascii_lowercase + string.digits
SYSTEM_ID_LENGTH = 6
_COLUMNS = (
    "system_id, hostname, url, registered, last_seen, state, snapshot_id, images, "
    "last_sync, error, updated"
)


@dataclass(frozen=True)
class RackRow:
    """One registered rack and its last report (``state`` None: it never reported)."""

    system_id: str
    hostname: str
    url: str
    registered: str
    last_seen: str
    state: RackState | None
    snapshot_id: str | None
    images: tuple[RackImage, ...]
    last_sync: str | None
    error: str | None
    updated: str | None


def new_system_id() -> str:
    """A random MAAS-style id: six lowercase letters and digits."""
    return "".join(secrets.choice(SYSTEM_ID_ALPHABET) for _ in range(SYSTEM_ID_LENGTH))


def utc_text(value: str) -> str:
    """An ISO 8601 time as stored (naive UTC); ValueError if it is not one."""
    when = datetime.fromisoformat(value)
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.isoformat(timespec="microseconds")


# --- the registry ---------------------------------------------------------------------


async def register_rack(conn: aiosqlite.Connection, reg: Registration) -> tuple[RackRow, bool]:
    """Record a (re-)registration; the rack and whether it is new.

    A known ``system_id`` keeps its row (hostname and URL are updated); none, or
    one this region does not know, gets a newly allocated id.
    """
    now = now_iso()
    async with transaction(conn):
        if reg.system_id is not None:
            cur = await conn.execute(
                "UPDATE racks SET hostname = ?, url = ?, last_seen = ? WHERE system_id = ?",
                (reg.hostname, reg.url, now, reg.system_id),
            )
            if cur.rowcount:
                system_id, new = reg.system_id, False
            else:
                system_id, new = await _insert(conn, reg, now), True
        else:
            system_id, new = await _insert(conn, reg, now), True
    rack = await get_rack(conn, system_id)
    assert rack is not None
    return rack, new


async def _insert(conn: aiosqlite.Connection, reg: Registration, now: str) -> str:
    while True:
        system_id = new_system_id()
        try:
            await conn.execute(
                "INSERT INTO racks (system_id, hostname, url, registered, last_seen) "
                "VALUES (?, ?, ?, ?, ?)",
                (system_id, reg.hostname, reg.url, now, now),
            )
        except aiosqlite.IntegrityError:
            continue  # 36^6 ids: a clash is rare, and another draw settles it
        return system_id


async def get_rack(conn: aiosqlite.Connection, system_id: str) -> RackRow | None:
    """The rack ``system_id``, or None."""
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM racks WHERE system_id = ?",  # noqa: S608
        (system_id,),
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else _rack(row)


async def list_racks(conn: aiosqlite.Connection) -> list[RackRow]:
    """Every registered rack, by hostname then id."""
    sql = f"SELECT {_COLUMNS} FROM racks ORDER BY hostname, system_id"  # noqa: S608
    async with conn.execute(sql) as cur:
        rows = await cur.fetchall()
    return [_rack(row) for row in rows]


async def store_status(conn: aiosqlite.Connection, system_id: str, status: RackStatus) -> bool:
    """Record a rack's report; False when the rack is unknown.

    ``status.last_sync`` must be ISO 8601 (ValueError otherwise); a report
    without one keeps the last known time.
    """
    try:
        last_sync = utc_text(status.last_sync) if status.last_sync is not None else None
    except ValueError:
        raise ValueError(f"last_sync: not an ISO 8601 time: {status.last_sync!r}") from None
    images = json.dumps(
        [
            {"name": i.name, "architecture": i.architecture, "subarches": list(i.subarches)}
            for i in status.images
        ]
    )
    now = now_iso()
    async with transaction(conn):
        cur = await conn.execute(
            "UPDATE racks SET state = ?, snapshot_id = ?, images = ?, "
            "last_sync = COALESCE(?, last_sync), error = ?, updated = ?, last_seen = ? "
            "WHERE system_id = ?",
            (
                status.state,
                status.snapshot_id,
                images,
                last_sync,
                status.error,
                now,
                now,
                system_id,
            ),
        )
    return bool(cur.rowcount)


async def touch_rack(conn: aiosqlite.Connection, system_id: str) -> None:
    """Note that the rack was just heard from."""
    async with transaction(conn):
        await conn.execute(
            "UPDATE racks SET last_seen = ? WHERE system_id = ?", (now_iso(), system_id)
        )


def _rack(row: aiosqlite.Row) -> RackRow:
    images = tuple(
        RackImage(
            name=i["name"], architecture=i["architecture"], subarches=list(i.get("subarches", []))
        )
        for i in json.loads(str(row["images"]))
    )
    return RackRow(
        system_id=row["system_id"],
        hostname=row["hostname"],
        url=row["url"],
        registered=row["registered"],
        last_seen=row["last_seen"],
        state=row["state"],
        snapshot_id=row["snapshot_id"],
        images=images,
        last_sync=row["last_sync"],
        error=row["error"],
        updated=row["updated"],
    )


# --- the hub ----------------------------------------------------------------------------


class EventBox:
    """The events waiting for one stream: at most one of each kind, the newest data wins.

    That bounds it (a rack that does not read cannot make the region hoard
    events) and coalesces repeats: two snapshots published while the rack was
    busy are one ``snapshot`` event naming the newer one.
    """

    def __init__(self) -> None:
        self._pending: dict[str, str] = {}
        self._wake = asyncio.Event()
        self.closed = False

    def post(self, event: str, data: str) -> bool:
        """Queue ``event`` with ``data`` (replacing one queued); False once closed."""
        if self.closed:
            return False
        self._pending[event] = data
        self._wake.set()
        return True

    def close(self) -> None:
        """End the stream: :meth:`take` returns None from now on."""
        self.closed = True
        self._wake.set()

    async def take(self, quiet_s: float) -> list[tuple[str, str]] | None:
        """The queued (event, data) pairs, oldest first; [] after ``quiet_s`` of quiet.

        None once the box is closed (what is still queued is dropped).
        """
        if not self._pending and not self.closed:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), quiet_s)
        self._wake.clear()
        if self.closed:
            return None
        events = list(self._pending.items())
        self._pending.clear()
        return events


class RackHub:
    """The region's live side of its racks: the secret, and each open event stream.

    Each stream gets an :class:`EventBox` (bounded, coalescing), so a slow or
    stuck rack never holds up the others or the publisher. :meth:`close` ends
    every stream (region shutdown) and refuses new ones.
    """

    def __init__(self, secret: str, *, keepalive_s: float = KEEPALIVE_S) -> None:
        self.secret = secret
        self.keepalive_s = keepalive_s
        self.keyring_b64: str | None = None  # the region's public key, cached at first use
        self.closed = False
        self._boxes: dict[str, set[EventBox]] = {}

    @contextmanager
    def connect(self, system_id: str) -> Iterator[EventBox]:
        """An event box for one stream of ``system_id``, dropped when the block ends.

        Raises RuntimeError once the hub is closed.
        """
        if self.closed:
            raise RuntimeError("the rack hub is closed")
        box = EventBox()
        boxes = self._boxes.setdefault(system_id, set())
        boxes.add(box)
        log.info("rack_connected", system_id=system_id, streams=len(boxes))
        try:
            yield box
        finally:
            box.close()
            boxes.discard(box)
            if not boxes:
                self._boxes.pop(system_id, None)
            log.info("rack_disconnected", system_id=system_id, streams=len(boxes))

    def is_connected(self, system_id: str) -> bool:
        """True while ``system_id`` holds an event stream open."""
        return bool(self._boxes.get(system_id))

    def connected_ids(self) -> frozenset[str]:
        """The racks holding an event stream open."""
        return frozenset(sid for sid, boxes in self._boxes.items() if boxes)

    def send(self, event: str, data: Mapping[str, object], *, system_id: str | None = None) -> int:
        """Queue ``event`` for ``system_id`` (None: every rack); the racks it reached."""
        body = json.dumps(dict(data), sort_keys=True)
        reached = 0
        for sid, boxes in list(self._boxes.items()):
            if system_id is not None and sid != system_id:
                continue
            delivered = [box.post(event, body) for box in boxes]
            reached += any(delivered)
        return reached

    def on_snapshot(self, snapshot: PublishedSnapshot) -> None:
        """Publisher listener: announce the new snapshot to every connected rack."""
        reached = self.send("snapshot", {"id": snapshot.id})
        log.info("racks_notified", region_event="snapshot", snapshot_id=snapshot.id, racks=reached)

    def request_import(self, system_id: str | None = None) -> int:
        """Ask ``system_id`` (None: every rack) to sync now; the racks it reached."""
        reached = self.send("import", {}, system_id=system_id)
        log.info("racks_notified", region_event="import", system_id=system_id, racks=reached)
        return reached

    def close(self) -> None:
        """End every open stream and refuse new ones (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for boxes in self._boxes.values():
            for box in boxes:
                box.close()


async def open_rack_hub(
    data_dir: Path, publisher: SnapshotPublisher, *, keepalive_s: float = KEEPALIVE_S
) -> RackHub:
    """The hub for a starting region: the secret (created on first start) and snapshot news.

    Raises ConfigError for an unusable secret file, OSError if it cannot be made.
    """
    hub = RackHub(await aload_or_create_secret(data_dir), keepalive_s=keepalive_s)
    publisher.add_listener(hub.on_snapshot)
    return hub
