"""The rack's sync status: what it reports to the region, and what it remembers.

The last successful sync is kept in ``<data_dir>/last-sync.json`` (the index
ETag, the region snapshot and the rack snapshot it produced), so that after a
restart the first poll can still be a conditional request answered by 304 and
the status names the region snapshot the rack serves. The record is trusted
only while ``current`` still points at the rack snapshot it names.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.ops.logging import get_logger
from common.rackproto import RackImage, RackState, RackStatus
from common.storage.atomic import write_atomic
from rack.files import dump_json, read_json
from rack.layout import META_NAME, images_from_meta

log = get_logger("rack.status")

RECORD_FILE = "last-sync.json"


@dataclass(frozen=True)
class SyncRecord:
    """What the last successful sync produced."""

    index_etag: str | None
    region_snapshot: str | None
    rack_snapshot: str
    last_sync: str  # ISO 8601 UTC


def utc_now() -> str:
    """Now, as the ISO 8601 UTC text the status carries."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class StatusBoard:
    """The rack's current :class:`RackStatus`; ``changed`` is set whenever it changes."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / RECORD_FILE
        self.record: SyncRecord | None = None
        self.status = RackStatus(state="idle", snapshot_id=None)
        self.changed = asyncio.Event()

    async def load(self, current: Path) -> None:
        """Start from the snapshot ``current`` points at and the saved record, if they agree."""
        saved, meta = await asyncio.to_thread(_load, self._path, current)
        images = images_from_meta(meta) if meta is not None else []
        try:
            record = SyncRecord(**saved) if saved else None
        except TypeError:
            record = None
        current_id = await asyncio.to_thread(_link_name, current)
        if record is not None and record.rack_snapshot != current_id:
            record = None
        self.record = record
        state: RackState = "synced" if record is not None else "idle"
        self._set(
            RackStatus(
                state=state,
                snapshot_id=record.region_snapshot if record else None,
                images=images,
                last_sync=record.last_sync if record else None,
            )
        )

    @property
    def index_etag(self) -> str | None:
        """The ETag of the index the current snapshot was built from, if known."""
        return self.record.index_etag if self.record is not None else None

    def syncing(self) -> None:
        """A pull found work to do."""
        self._set(replace(self.status, state="syncing", error=None))

    def unchanged(self) -> None:
        """A poll found nothing new: the rack is in sync with what it last pulled."""
        if self.record is not None:
            self._set(replace(self.status, state="synced", error=None))

    async def succeeded(self, record: SyncRecord, images: list[RackImage]) -> None:
        """A pull published ``record.rack_snapshot``; remember it across restarts."""
        data = dump_json(asdict(record))
        await asyncio.to_thread(write_atomic, self._path, data)
        self.record = record
        self._set(
            RackStatus(
                state="synced",
                snapshot_id=record.region_snapshot,
                images=images,
                last_sync=record.last_sync,
            )
        )

    def failed(self, error: str) -> None:
        """A pull (or the registration) failed; the rack keeps serving what it has."""
        self._set(replace(self.status, state="failed", error=error))

    def _set(self, status: RackStatus) -> None:
        if status != self.status:
            self.status = status
            self.changed.set()


def _load(path: Path, current: Path) -> tuple[dict[str, Any], Any]:
    saved = read_json(path)
    try:
        meta = json.loads((current / META_NAME).read_bytes())
    except (OSError, ValueError):
        meta = None
    return saved, meta


def _link_name(link: Path) -> str | None:
    try:
        return Path(link.readlink()).name
    except OSError:
        return None
