"""Peer sync: this region fetches the blobs it lacks from the live regions that hold them.

Each region keeps its own blob store. After an import anywhere in the cluster
(event ``import_finished``), at start, and every ``interval_s`` as a fallback,
:class:`PeerSync` compares the blobs of the database's complete sets with its
store and fetches the missing ones from a live peer recorded as holding them
(``GET <peer url>/MAAS/cluster/blobs/<sha256>`` with the cluster's peer token),
through the import's own transfer code: verified sha256, ``concurrency`` at a
time, resumed from the partial file after a failure or a restart. Upstream is
never asked. Then it records its holdings (region/cluster/holdings.py),
publishes ``blobs_held`` and republishes its stream, which tells its racks.

A blob no live peer holds stays missing until one does; the region's stream
leaves out the sets it cannot serve (region/images/publish.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from common.ops.logging import get_logger, short_sha
from common.storage.blobstore import BlobStore
from common.transfer.download import Downloader, DownloadOutcome, DownloadRequest
from common.transfer.http import make_session
from common.transfer.limits import TransferLimits
from common.transfer.workers import run_bounded
from region.cluster import holdings
from region.cluster.peer_wire import PEER_TOKEN_HEADER, peer_blob_url
from region.context import RegionContext
from region.db.connection import Database

log = get_logger("cluster")

DEFAULT_INTERVAL_S = 60.0
DEFAULT_CONCURRENCY = 4


class PeerRegion(Protocol):
    """A live region as region/cluster/registry.py lists it: id, name, URL."""

    @property
    def id(self) -> int:
        """Its row id in ``regions``."""

    @property
    def name(self) -> str:
        """Its unique name."""

    @property
    def url(self) -> str:
        """Where it serves (its peers fetch blobs there)."""


@dataclass(frozen=True)
class Peer:
    """A region's id, name and URL (a :class:`PeerRegion`)."""

    id: int
    name: str
    url: str


@dataclass(frozen=True)
class SyncResult:
    """What one pass did: blobs fetched, failed, with no live holder, bytes received."""

    missing: int
    fetched: int
    failed: int
    unavailable: int
    bytes_received: int
    recorded: bool = False  # this region's recorded holdings changed


class ClusterView(Protocol):
    """This region in its cluster (region/cluster/registry.py ClusterMember, ``ctx.cluster``)."""

    @property
    def region_id(self) -> int:
        """This region's row id in ``regions``."""

    @property
    def name(self) -> str:
        """This region's name."""

    async def live_regions(self) -> Sequence[PeerRegion]:
        """The live regions of the cluster (this one included)."""


class EventBus(Protocol):
    """The part of region/cluster/events.py ClusterEvents peer sync uses."""

    async def publish(self, kind: str, **fields: str | int | bool | None) -> None:
        """Deliver ``kind`` to every region."""

    def subscribe(
        self, kind: str, callback: Callable[[Mapping[str, Any]], Awaitable[None]]
    ) -> None:
        """Call ``callback`` for every ``kind`` event."""


class PeerSync:
    """Keeps this region's store holding every blob of the cluster's complete sets.

    ``cluster`` is this region and its live peers; ``token`` answers the cluster's
    peer token; ``republish`` publishes this region's stream again;
    ``importing_here`` tells whether this region's own import runs (a pass then
    records holdings but fetches nothing) and ``wait_idle`` waits for its end (the
    pass after this region's own ``import_finished`` waits for it). Use
    :meth:`start` and :meth:`close`; :meth:`sync` runs one pass.
    """

    def __init__(
        self,
        *,
        db: Database,
        store: BlobStore,
        cluster: ClusterView,
        token: Callable[[], str | None],
        republish: Callable[[], Awaitable[object]],
        events: EventBus | None = None,
        importing_here: Callable[[], bool] = lambda: False,
        wait_idle: Callable[[], Awaitable[None]] | None = None,
        user_agent: str = "bootsync-regiond",
        concurrency: int = DEFAULT_CONCURRENCY,
        interval_s: float = DEFAULT_INTERVAL_S,
        limits: TransferLimits | None = None,
        retries: int = 4,
    ) -> None:
        self._cluster = cluster
        self._db = db
        self._store = store
        self._token = token
        self._republish = republish
        self._events = events
        self._importing_here = importing_here
        self._wait_idle = wait_idle
        self._user_agent = user_agent
        self._concurrency = concurrency
        self._interval_s = interval_s
        self._limits = limits
        self._retries = retries
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False
        self.passes = 0  # completed passes, for tests and metrics
        self.fetched_total = 0
        self.bytes_total = 0

    async def start(self) -> None:
        """Subscribe to ``import_finished`` and ``blobs_held``; a first pass now, one every interval."""
        self._session = make_session(user_agent=self._user_agent)
        if self._events is not None:
            self._events.subscribe("import_finished", self._on_import_finished)
            self._events.subscribe("blobs_held", self._on_blobs_held)
        self._spawn(self._safe_sync("start", republish=False))
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def close(self) -> None:
        """Stop the passes (partial downloads stay for a resume) and close the session."""
        self._closed = True
        tasks = [*self._tasks, *([self._ticker] if self._ticker is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _on_import_finished(self, fields: Mapping[str, Any]) -> None:
        sender = str(fields.get("region") or "")
        own = sender == self._cluster.name
        if own and self._wait_idle is not None:
            await self._wait_idle()  # the event is sent just before the import lets go
        # Our own import published its stream; another region's needs ours republished.
        await self._safe_sync(f"import_finished:{sender}", republish=not own)

    async def _on_blobs_held(self, fields: Mapping[str, Any]) -> None:
        # A peer's holdings changed: it may now hold what we lack (its own import's blobs).
        sender = str(fields.get("region") or "")
        if sender != self._cluster.name:
            await self._safe_sync(f"blobs_held:{sender}", republish=False)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self._safe_sync("periodic", republish=False)

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _safe_sync(self, reason: str, *, republish: bool) -> None:
        if self._closed:
            return  # an event heard while the region stops
        try:
            await self.sync(reason, republish=republish)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged; the next pass tries again
            log.warning(
                "peer_sync_failed", reason=reason, error=str(exc), error_type=type(exc).__name__
            )

    async def sync(self, reason: str = "manual", *, republish: bool = True) -> SyncResult:
        """One pass: fetch what the store lacks from live peers, record, announce, republish.

        Passes run one at a time. The stream is republished once nothing is missing,
        after a pass that fetched something or, with ``republish``, even when nothing
        was fetched (after another region's import); never while blobs are missing. Raises what the
        database raises; a blob that fails is counted, not raised.
        """
        async with self._lock:
            result = await self._pass(reason)
            self.passes += 1
        if result.recorded and self._events is not None:
            await self._events.publish("blobs_held", fetched=result.fetched)
        # While blobs are still missing (no live peer holds them yet: a peer records its
        # holdings after its import_finished; or one failed) the current stream stays:
        # the database's sets have moved on, so a republish now would drop the images
        # not complete here and the racks would delete them. The pass that fetches the
        # last missing blob republishes.
        if not (result.unavailable or result.failed) and (result.fetched or republish):
            await self._republish()
        return result

    async def _pass(self, reason: str) -> SyncResult:
        if self._importing_here():
            # Its downloads may want the same blobs: record, fetch after its import_finished.
            log.debug("peer_sync_deferred", reason=reason, why="an import runs in this region")
            recorded = await holdings.refresh_holdings(
                self._db, self._store, self._cluster.region_id
            )
            return SyncResult(0, 0, 0, 0, 0, recorded=recorded)
        wanted = await holdings.complete_set_blobs(self._db)
        held = await holdings.held_by_store(self._store, wanted)
        missing = [b for b in wanted if b.sha256 not in held]
        if not missing:
            recorded = await holdings.refresh_holdings(
                self._db, self._store, self._cluster.region_id
            )
            return SyncResult(0, 0, 0, 0, 0, recorded=recorded)
        started = time.monotonic()
        me = self._cluster.region_id
        peers = {p.id: p for p in await self._cluster.live_regions() if p.id != me}
        where = await holdings.holders(self._db, [b.sha256 for b in missing], peers)
        if not where:  # nothing any live peer can give: record, and wait for one that can
            recorded = await holdings.refresh_holdings(self._db, self._store, me)
            return SyncResult(len(missing), 0, 0, len(missing), 0, recorded=recorded)
        log.info(
            "peer_sync_started",
            reason=reason,
            missing=len(missing),
            bytes=sum(b.size for b in missing),
            peers=sorted(p.name for p in peers.values()),
        )
        fetchable = [b for b in missing if b.sha256 in where]
        outcomes = await self._fetch(fetchable, peers, where)
        ok = [o for o in outcomes if o.ok]
        received = sum(o.bytes_received for o in outcomes)
        recorded = await holdings.refresh_holdings(self._db, self._store, me)
        result = SyncResult(
            missing=len(missing),
            fetched=len(ok),
            failed=len(outcomes) - len(ok),
            unavailable=len(missing) - len(fetchable),
            bytes_received=received,
            recorded=recorded,
        )
        self.fetched_total += result.fetched
        self.bytes_total += received
        log.info(
            "peer_sync_finished",
            reason=reason,
            fetched=result.fetched,
            failed=result.failed,
            unavailable=result.unavailable,
            bytes=received,
            duration_s=round(time.monotonic() - started, 3),
        )
        return result

    async def _fetch(
        self,
        blobs: Sequence[holdings.Blob],
        peers: Mapping[int, PeerRegion],
        where: Mapping[str, list[int]],
    ) -> list[DownloadOutcome]:
        """Fetch ``blobs``, each from its holders in turn (spread round-robin), verified."""
        if not blobs:
            return []
        session = self._session
        if session is None:
            raise RuntimeError("PeerSync.start() was not called")
        token = self._token()
        if not token:
            raise RuntimeError("the cluster's peer token is not known yet")
        session.headers[PEER_TOKEN_HEADER] = token
        await self._store.ensure_space(sum(b.size for b in blobs))
        downloader = Downloader(session, self._store, limits=self._limits, retries=self._retries)
        order = {sha: n for n, sha in enumerate(b.sha256 for b in blobs)}

        async def fetch(blob: holdings.Blob) -> DownloadOutcome:
            ids = where[blob.sha256]
            first = order[blob.sha256] % len(ids)
            outcome: DownloadOutcome | None = None
            for region_id in [*ids[first:], *ids[:first]]:
                peer = peers[region_id]
                req = DownloadRequest(
                    url=peer_blob_url(peer.url, blob.sha256),
                    sha256=blob.sha256,
                    size=blob.size,
                    name=f"peer:{peer.name}",
                )
                outcome = await downloader.fetch(req)
                if outcome.ok:
                    log.debug(
                        "peer_blob_fetched",
                        sha256=short_sha(blob.sha256),
                        peer=peer.name,
                        bytes=outcome.bytes_received,
                        resumed_from=outcome.resumed_from,
                        attempts=outcome.attempts,
                    )
                    break
            assert outcome is not None  # every fetchable blob has a holder
            return outcome

        return await run_bounded(blobs, fetch, self._concurrency)


async def start_peer_sync(
    ctx: RegionContext,
    *,
    token: Callable[[], str | None],
    user_agent: str,
    limits: TransferLimits | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    importing_here: Callable[[], bool] = lambda: False,
    wait_idle: Callable[[], Awaitable[None]] | None = None,
) -> PeerSync | None:
    """Start the peer sync of the region ``ctx`` describes; None while it has no ``cluster``."""
    cluster = ctx.cluster
    if cluster is None:
        log.warning(
            "peer_sync_failed", reason="start", error="the region has no cluster membership"
        )
        return None

    async def republish() -> bool:
        return await ctx.importer.republish(reason="peer_sync")

    sync = PeerSync(
        db=ctx.db,
        store=ctx.store,
        cluster=cluster,
        token=token,
        republish=republish,
        events=ctx.events,
        importing_here=importing_here,
        wait_idle=wait_idle,
        user_agent=user_agent,
        concurrency=concurrency,
        limits=limits,
    )
    await sync.start()
    return sync
