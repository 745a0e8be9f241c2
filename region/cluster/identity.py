"""Who this region is in its cluster: its name, the URL its peers reach it at, its timings.

``[cluster] name`` defaults to the host name and ``[cluster] url`` to
``http://<host name>:<listen port>``. ``heartbeat_s`` and ``lease_s`` are floats
so that tests can run a cluster on sub-second periods; the configuration
allows whole seconds.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from region.config import DEFAULT_HEARTBEAT_SECONDS, DEFAULT_LEASE_SECONDS, RegionConfig

LIVE_HEARTBEATS = 3
"""A region is live while its last heartbeat is at most this many heartbeats old."""


@dataclass(frozen=True)
class RegionIdentity:
    """One region's name and URL, and the cluster's heartbeat and lease periods (seconds)."""

    name: str
    url: str
    heartbeat_s: float = DEFAULT_HEARTBEAT_SECONDS
    lease_s: float = DEFAULT_LEASE_SECONDS

    @property
    def live_window_s(self) -> float:
        """Seconds since its last heartbeat within which a region counts as live."""
        return LIVE_HEARTBEATS * self.heartbeat_s

    @classmethod
    def from_config(cls, config: RegionConfig, *, hostname: str | None = None) -> RegionIdentity:
        """The identity ``config`` gives (``hostname``: the host name, by default this host's)."""
        host = hostname or socket.gethostname()
        return cls(
            name=config.cluster_name or host,
            url=config.cluster_url or f"http://{host}:{config.listen_port}",
            heartbeat_s=float(config.heartbeat_seconds),
            lease_s=float(config.lease_seconds),
        )
