"""Per-image status strings, word for word as MAAS's images page shows them.

Only the region's states for now: ``Queued for download`` (no set yet, or a
newest set with no bytes), ``Downloading NN%`` (``%3.0f``: the number is
right-aligned in three characters) and ``Synced``. The rack states
(``Syncing to rack controller(s)``, ``Waiting for rack controller(s) to sync``)
come with the racks. In a cluster, a complete image some live region's store
still lacks is ``Syncing to region controller(s)`` (region/cluster/holdings.py
says which regions).
"""

from __future__ import annotations

QUEUED = "Queued for download"
SYNCED = "Synced"
SYNCING_REGIONS = "Syncing to region controller(s)"


def progress(done: int, total: int) -> float:
    """Percent of ``total`` bytes held (0 when there is nothing to hold).

    MAAS 3.4 put total/done in the per-file ``progress`` key; this is done/total.
    """
    if total <= 0:
        return 0.0
    return 100.0 * min(done, total) / total


def downloading(percent: float) -> str:
    """``Downloading  7%``: MAAS's ``Downloading %3.0f%%``."""
    return f"Downloading {percent:3.0f}%"


def image_status(*, has_set: bool, complete: bool, done: int, total: int) -> str:
    """The status of an image from its newest set (``has_set`` False: none yet)."""
    if has_set and complete:
        return SYNCED
    if not has_set or done <= 0:
        return QUEUED
    return downloading(progress(done, total))
