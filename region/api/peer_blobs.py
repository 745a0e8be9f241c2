"""``GET|HEAD /MAAS/cluster/blobs/{sha256}``: a blob of this region's store, for its peers.

The other regions of the cluster fetch the blobs they lack from a region that
holds them (region/cluster/peers.py), never from upstream again. A request must
carry the cluster's peer token in ``X-Bootsync-Peer-Token`` (compared in constant
time): 401 without it or with another; then 400 for a malformed sha256, 404 for a
blob this store does not hold, else the blob with Range support (206) sent by
:class:`common.storage.fileserve.SendfileResponse`.

What to serve and the token to expect are ``app[PEER_BLOBS]``, which the region
sets when its context opens; until then every request is refused (401).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from common.ops.logging import get_logger, short_sha
from common.storage.blobstore import BlobStore, check_sha256
from common.storage.fileserve import SendfileResponse
from region.api.http import json_response
from region.cluster.peer_wire import PEER_BLOBS_PREFIX, PEER_TOKEN_HEADER, token_matches

log = get_logger("api.peer_blobs")


@dataclass(frozen=True)
class PeerBlobSource:
    """The store peers fetch from, and the cluster's peer token (read at each request)."""

    store: BlobStore
    token: Callable[[], str | None]


PEER_BLOBS = web.AppKey("peer_blobs", PeerBlobSource)


async def serve_peer_blob(request: web.Request) -> web.StreamResponse:
    """GET/HEAD: blob ``sha256`` for a peer region holding the cluster's token."""
    source = request.app.get(PEER_BLOBS)
    given = request.headers.get(PEER_TOKEN_HEADER)
    if source is None or not token_matches(source.token(), given):
        log.info(
            "peer_auth_failed",
            reason="missing" if given is None else "wrong token",
            remote=request.remote,
            path=request.path,
        )
        raise web.HTTPUnauthorized(
            text="A valid peer token is required.", content_type="text/plain"
        )
    sha256 = request.match_info["sha256"]
    try:
        check_sha256(sha256)
    except ValueError:
        return json_response({"sha256": ["Must be 64 lowercase hex digits."]}, status=400)
    if await source.store.size_of(sha256) is None:
        raise web.HTTPNotFound(text=f"Blob {sha256} is not held here.", content_type="text/plain")
    log.debug("peer_blob_served", sha256=short_sha(sha256), range=request.headers.get("Range"))
    # Stat and open in a worker thread, the body by os.sendfile; a Range gets a 206.
    return SendfileResponse(source.store.path_for(sha256), chunk_size=1 << 20)


def add_routes(app: web.Application) -> None:
    """Register the peer blob route (GET and HEAD)."""
    app.router.add_get(PEER_BLOBS_PREFIX + "/{sha256}", serve_peer_blob)
