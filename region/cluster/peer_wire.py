"""What the regions of a cluster agree on to fetch blobs from each other.

A region serves its store's blobs at ``<its url>/MAAS/cluster/blobs/<sha256>``
(region/api/peer_blobs.py) to a peer that sends the cluster's peer token in
``X-Bootsync-Peer-Token``; region/cluster/peers.py is the fetching side.
"""

from __future__ import annotations

import hmac

PEER_BLOBS_PREFIX = "/MAAS/cluster/blobs"
PEER_TOKEN_HEADER = "X-Bootsync-Peer-Token"  # noqa: S105 - a header name


def peer_blob_url(base_url: str, sha256: str) -> str:
    """The URL of blob ``sha256`` on the region whose URL is ``base_url``."""
    return f"{base_url.rstrip('/')}{PEER_BLOBS_PREFIX}/{sha256}"


def token_matches(expected: str | None, given: str | None) -> bool:
    """True when ``given`` is the known, non-empty ``expected`` token (constant-time compare)."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
