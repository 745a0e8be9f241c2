"""The cluster event bus: what one region tells every region of the cluster (itself included).

``await events.publish("import_finished", outcome="ok", published=True)`` hands
each subscriber of that kind, in every region, the fields plus ``"region"`` (the
sender's name). On PostgreSQL an event travels as a JSON ``NOTIFY`` on the channel
``bootsync_events``, heard by each region's dedicated ``LISTEN`` connection
(:meth:`region.db.connection.Database.listen`, which reconnects after an outage);
on SQLite (one region) delivery is in-process. The sender's own subscribers are
called directly, so they hear the event even while the server is unreachable.

Delivery is best effort: an event sent while a region's listener is reconnecting
is lost to that region, so subscribers also have a periodic fallback.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from common.ops.logging import get_logger
from region.db.connection import Database

__all__ = ["CHANNEL", "MAX_PAYLOAD_BYTES", "Callback", "ClusterEvents", "open_events"]

log = get_logger("cluster")

CHANNEL = "bootsync_events"
MAX_PAYLOAD_BYTES = 7999  # PostgreSQL: a NOTIFY payload must be shorter than 8000 bytes

FieldValue = str | int | bool | None
Callback = Callable[[Mapping[str, Any]], Awaitable[None]]


class ClusterEvents:
    """Publish events to every region of the cluster; subscribe to them by kind."""

    def __init__(self, db: Database, region: str) -> None:
        self._db = db
        self._region = region
        self._origin = uuid.uuid4().hex  # tells this bus's own NOTIFYs from a namesake's
        self._subscribers: dict[str, list[Callback]] = {}
        self._running: set[asyncio.Task[None]] = set()

    @property
    def region(self) -> str:
        """The name this region's events carry as ``"region"``."""
        return self._region

    def subscribe(self, kind: str, callback: Callback) -> None:
        """Call ``callback(fields)`` (in a task of its own) for every ``kind`` event, any region's."""
        self._subscribers.setdefault(kind, []).append(callback)

    async def publish(self, kind: str, **fields: FieldValue) -> None:
        """Deliver ``kind`` with ``fields`` (plus ``region``) to every region, this one included.

        ValueError if the event is too large for a NOTIFY. The other regions miss it
        (logged ``cluster_event_not_sent``) when the database cannot be reached.
        """
        message: dict[str, FieldValue] = {**fields, "region": self._region}
        payload = json.dumps(
            {"kind": kind, "origin": self._origin, "fields": message},
            separators=(",", ":"),
            sort_keys=True,
        )
        size = len(payload.encode("utf-8"))
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"event {kind!r} is {size} bytes, over {MAX_PAYLOAD_BYTES}")
        self._deliver(kind, message)
        try:
            await self._db.notify(CHANNEL, payload)
        except Exception as exc:  # noqa: BLE001 - the database error, whichever it is, is logged
            log.warning("cluster_event_not_sent", kind=kind, error=str(exc))

    def receive(self, payload: str) -> None:
        """Deliver one payload heard on the channel (another region's event) to the subscribers."""
        try:
            kind, origin, fields = _parse(payload)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("cluster_event_malformed", error=str(exc), size=len(payload))
            return
        if origin != self._origin:
            self._deliver(kind, fields)

    def _deliver(self, kind: str, fields: Mapping[str, Any]) -> None:
        for callback in self._subscribers.get(kind, ()):
            task = asyncio.get_running_loop().create_task(self._call(callback, kind, dict(fields)))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    @staticmethod
    async def _call(callback: Callback, kind: str, fields: Mapping[str, Any]) -> None:
        try:
            await callback(fields)
        except Exception as exc:  # noqa: BLE001 - one subscriber's failure must not stop the bus
            log.warning(
                "cluster_event_handler_failed",
                kind=kind,
                sender=fields.get("region"),
                error=str(exc),
                error_type=type(exc).__name__,
            )

    async def close(self) -> None:
        """Cancel the subscriber calls still running and wait for them."""
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def _parse(payload: str) -> tuple[str, object, Mapping[str, Any]]:
    """(kind, origin, fields) of a payload; ValueError, TypeError or KeyError if malformed."""
    event = json.loads(payload)
    kind, origin, fields = event["kind"], event["origin"], event["fields"]
    if not isinstance(kind, str) or not isinstance(fields, dict):
        raise TypeError("kind must be a string and fields an object")
    return kind, origin, fields


@asynccontextmanager
async def open_events(db: Database, region: str) -> AsyncIterator[ClusterEvents]:
    """The bus of region ``region``, listening on ``db`` until the block ends."""
    events = ClusterEvents(db, region)
    try:
        async with db.listen(CHANNEL, events.receive):
            yield events
    finally:
        await events.close()
