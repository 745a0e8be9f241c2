"""Rack controllers at the region: the live event hub.

The registry of racks is :mod:`region.db.racks`. :class:`RackHub` holds what
only the running region knows: the shared secret racks authenticate with and
the event streams they hold open. A rack is *connected* while at least one
of its event streams is open.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from common.ops.logging import get_logger
from common.rackproto import KEEPALIVE_S
from common.storage.snapshot import PublishedSnapshot, SnapshotPublisher
from region.rackhub.secret import aload_or_create_secret

log = get_logger("racks")


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
