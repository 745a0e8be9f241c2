"""What the region's handlers and jobs share, held on the aiohttp app under one AppKey."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web

from common.storage.blobstore import BlobStore
from common.storage.snapshot import SnapshotPublisher
from common.trust.keyrings import SigningKey
from region.cluster.events import ClusterEvents
from region.cluster.registry import ClusterMember
from region.config import RegionConfig
from region.db.connection import Database
from region.rackhub.hub import RackHub


class ImportControl(Protocol):
    """Starts, watches and stops the region import (region/images/importer.py implements it)."""

    def start(self, *, reason: str, force: bool = False) -> bool:
        """Start an import in the background; False (logged) if one is running.

        ``force`` accepts an upstream index older than the last one imported.
        """

    def is_importing(self) -> bool:
        """True while an import runs, in this region or (its lease says) another of the cluster."""

    async def wait_idle(self) -> None:
        """Return once no import runs (at once if none does)."""

    async def stop(self) -> None:
        """Cancel a running import promptly; nothing half-published remains."""

    async def republish(self, *, reason: str) -> bool:
        """Publish the stream again (after a deletion); False if an import will do it."""


class CatalogueControl(Protocol):
    """Refreshes what boot sources offer (region/images/catalogue.py implements it)."""

    def schedule_refresh(self, *, reason: str) -> None:
        """Refresh every source's catalogue soon, in the background."""


class ScheduleControl(Protocol):
    """The auto-import schedule (region/images/scheduler.py implements it)."""

    def set_interval(self, minutes: int) -> None:
        """Run every ``minutes`` from now on."""


@dataclass
class RegionContext:
    """Shared state of one running region."""

    data_dir: Path
    db: Database  # reads see the last committed state; writes are transactions
    session: aiohttp.ClientSession
    store: BlobStore
    publisher: SnapshotPublisher
    region_key: SigningKey
    importer: ImportControl
    catalogue: CatalogueControl
    # Defaults (data_dir aside) until the daemon passes the loaded configuration.
    config: RegionConfig = field(default_factory=RegionConfig)
    # The racks' secret and event streams (None until the region wires racks in).
    racks: RackHub | None = None
    # The auto-import schedule (None until the daemon starts it).
    schedule: ScheduleControl | None = None
    # This region in its cluster: region_id, name, url, live_regions(), the
    # database's health (region/cluster/registry.py; None until the daemon joins).
    cluster: ClusterMember | None = None
    # The cluster event bus (region/cluster/events.py; None until the daemon opens it).
    events: ClusterEvents | None = None


CTX = web.AppKey("region_context", RegionContext)
