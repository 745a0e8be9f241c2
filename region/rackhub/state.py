"""What the region says about its racks' images: ``list_boot_images`` and MAAS's status strings.

Two views, both decided by one rule: a rack holds the region's images when it
reports serving the region's *current* snapshot (a rack switches snapshots
only when the new one is complete, so that id is a promise about content).

- :func:`rack_status`: one rack, for ``list_boot_images``.
- :func:`rack_sync_summary`: all racks, for the per-image status of the
  images page (``Synced`` / ``Syncing to rack controller(s)`` /
  ``Waiting for rack controller(s) to sync``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from region.db.connection import Database
from region.db.racks import RackRow, list_racks

RackMaasStatus = Literal["synced", "syncing", "out-of-sync", "region-importing", "unknown"]

RACK_SYNCED = "Synced"
RACK_SYNCING = "Syncing to rack controller(s)"
RACK_WAITING = "Waiting for rack controller(s) to sync"


def rack_status(
    rack: RackRow, *, connected: bool, current_snapshot_id: str | None, region_importing: bool
) -> RackMaasStatus:
    """``list_boot_images``'s ``status`` for ``rack``.

    ``unknown`` when the rack is not connected or never reported (MAAS answers
    so for an unreachable rack); else ``region-importing`` while the region
    imports; ``syncing`` while the rack pulls; ``synced`` when it serves the
    current snapshot; ``out-of-sync`` otherwise (behind, or its pull failed).
    """
    if not connected or rack.state is None:
        return "unknown"
    if region_importing:
        return "region-importing"
    if rack.state == "syncing":
        return "syncing"
    if rack.snapshot_id == current_snapshot_id:
        return "synced"
    return "out-of-sync"


def _split_arch(architecture: str) -> tuple[str, str | None]:
    base, _, subarch = architecture.partition("/")
    return base, subarch or None


@dataclass(frozen=True)
class RackSyncSummary:
    """Where the region's images stand on the racks that count (see :func:`rack_sync_summary`).

    ``holdings`` has one entry per counted rack: (name, base arch) → subarches
    it serves from the current snapshot (empty for a rack that serves another
    snapshot or never reported).
    """

    racks: int
    serving_current: int
    rack_import_running: bool
    holdings: tuple[Mapping[tuple[str, str], frozenset[str]], ...]

    @property
    def all_current(self) -> bool:
        """True when every counted rack serves the current snapshot (or none counts)."""
        return self.serving_current == self.racks

    def on_all_racks(self, name: str, architecture: str) -> bool:
        """True when every counted rack holds ``name`` for ``architecture``.

        ``architecture`` is a base arch (``amd64``: any subarch will do) or
        ``arch/subarch`` (``amd64/ga-24.04``: that subarch must be held).
        """
        if not self.holdings:  # no rack counts: nothing to wait for
            return True
        base, subarch = _split_arch(architecture)
        for held in self.holdings:
            subarches = held.get((name, base))
            if subarches is None or (subarch is not None and subarch not in subarches):
                return False
        return True

    def image_status(self, name: str, architecture: str) -> str:
        """The rack part of a *complete* image's status, in MAAS's words.

        ``Synced`` when on every counted rack; else ``Syncing to rack
        controller(s)`` while a rack pulls; else ``Waiting for rack
        controller(s) to sync``. An incomplete image keeps its region status
        (``Queued for download`` / ``Downloading NN%``): do not call this for it.
        """
        if self.on_all_racks(name, architecture):
            return RACK_SYNCED
        return RACK_SYNCING if self.rack_import_running else RACK_WAITING


def summarize(
    racks: Collection[RackRow],
    current_snapshot_id: str | None,
    *,
    rack_import_running: bool | None = None,
    connected: Collection[str] | None = None,
) -> RackSyncSummary:
    """The pure part of :func:`rack_sync_summary` (same arguments, racks already read)."""
    counted = [r for r in racks if connected is None or r.system_id in connected]
    holdings: list[Mapping[tuple[str, str], frozenset[str]]] = []
    serving = 0
    for rack in counted:
        held: dict[tuple[str, str], frozenset[str]] = {}
        if rack.state is not None and rack.snapshot_id == current_snapshot_id:
            serving += 1
            for image in rack.images:
                base, _ = _split_arch(image.architecture)
                held[(image.name, base)] = held.get((image.name, base), frozenset()) | frozenset(
                    image.subarches
                )
        holdings.append(held)
    running = (
        rack_import_running
        if rack_import_running is not None
        else any(r.state == "syncing" for r in counted)
    )
    return RackSyncSummary(
        racks=len(counted),
        serving_current=serving,
        rack_import_running=running,
        holdings=tuple(holdings),
    )


async def rack_sync_summary(
    db: Database,
    current_snapshot_id: str | None,
    rack_import_running: bool | None = None,
    *,
    connected: Collection[str] | None = None,
) -> RackSyncSummary:
    """Read the racks and say where the region's images stand on them.

    ``current_snapshot_id``: ``await ctx.publisher.current_id()``.
    ``rack_import_running``: None derives it from the racks' reports (a counted
    rack says ``syncing``); True/False overrides that.
    ``connected``: the racks that count, normally ``ctx.racks.connected_ids()``
    (MAAS asks only the racks it can reach); None counts every registered rack.

    With no rack counted (none registered, or none connected) every complete
    image is ``Synced``: the region holds it and no rack is waiting for it.
    """
    racks = await list_racks(db)
    return summarize(
        racks, current_snapshot_id, rack_import_running=rack_import_running, connected=connected
    )
