"""The cluster's gauges on /metrics: live regions, the import lease here, the database's state.

Read at scrape time. The database is pinged first (the answer cached, as for
``/healthz``); while it cannot be reached, the regions are not listed and
``bootsync_database_up`` is 0.
"""

from __future__ import annotations

from prometheus_client.core import Metric

from common.ops import metrics
from region.cluster.registry import ClusterMember, list_regions, live_regions

__all__ = ["cluster_metrics"]


async def cluster_metrics(member: ClusterMember, *, lease_held: bool) -> list[Metric]:
    """``bootsync_region_live{region}``, ``bootsync_import_lease_held``, ``bootsync_database_up``."""
    state = await member.health.check()
    families: list[Metric] = [
        *metrics.gauge(
            "bootsync_database_up",
            "1 while this region reaches its database, else 0.",
            float(state.up),
        ),
        *metrics.gauge(
            "bootsync_import_lease_held",
            "1 while this region holds the cluster's import lease (it imports), else 0.",
            float(lease_held),
        ),
    ]
    if not state.up:
        return families
    try:
        known = await list_regions(member.db)
        live = {
            r.name for r in await live_regions(member.db, window_s=member.identity.live_window_s)
        }
    except Exception:  # noqa: BLE001 - the database went away since the ping: no listing
        return families
    families.append(
        metrics.labelled_gauge(
            "bootsync_region_live",
            "1 for each region of the cluster heard of within three heartbeats, else 0.",
            ["region"],
            [((r.name,), float(r.name in live)) for r in known],
        )
    )
    return families
