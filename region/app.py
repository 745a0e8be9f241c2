"""The region's aiohttp application: routes, middlewares, and what they share.

Resources are acquired in one ``cleanup_ctx`` generator, in the order they
depend on each other, and released in reverse: the scheduler stops first, then
a running import is cancelled (its partial downloads stay for a resume), then
the HTTP session, the signing key's agent and the database are closed.
Before that, at SIGTERM, :func:`drain` stops scheduling imports and gives a
running one a grace period to finish.

``/healthz`` answers 200 when the region is ready and 503 with the reason
(starting, stopping) otherwise; ``/metrics`` is the Prometheus exposition
(on the main port unless ``[metrics] listen`` moves it, behind a token if
``[metrics] token_file`` names one: common/ops/metrics_access.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client.core import Metric

from common.ops import daemon, metrics
from common.ops.logging import get_logger
from common.ops.metrics_access import add_metrics_route
from common.rackproto import SYNC_STATES
from common.storage.atomic import write_if_changed
from common.storage.blobstore import BlobStore
from common.storage.modes import DATA_DIR_MODE, tighten_dir
from common.storage.snapshot import SnapshotPublisher
from common.transfer.http import make_session
from common.trust.keyrings import SigningKey
from common.version import user_agent
from region import web as stream_web
from region.api import handlers, peer_blobs, rack_protocol, uploads
from region.api.auth import auth_middleware
from region.api.describe import API_HASH
from region.api.http import api_hash_middleware, maas_errors
from region.cluster.events import open_events
from region.cluster.identity import RegionIdentity
from region.cluster.lease import ImportLease, claim_auto_import
from region.cluster.metrics import cluster_metrics
from region.cluster.peers import start_peer_sync
from region.cluster.registry import ClusterMember
from region.cluster.secrets import adopt_cluster_secrets
from region.config import RegionConfig
from region.context import CTX, RegionContext
from region.db.config import get_config, get_config_or
from region.db.connection import open_db
from region.db.imports import last_ok_import
from region.db.racks import list_racks
from region.images.catalogue import Catalogue
from region.images.importer import Importer
from region.images.publish import KEYRING_NAME
from region.images.scheduler import AutoImport
from region.images.steps import ImportSettings
from region.rackhub.hub import open_rack_hub
from region.ui import setup_ui

log = get_logger("region")

USER_AGENT = user_agent("bootsync-regiond")
REGION_KEY_DIR = "gnupg"
MAX_BODY = 64 << 20  # multipart uploads of keyrings and small images
AUTO_IMPORT = web.AppKey("auto_import", AutoImport)
IMPORTER = web.AppKey("importer", Importer)  # this region's own imports, for the drain
STOPPING = web.AppKey("stopping", asyncio.Event)  # set once shutdown has begun


async def build_app(config: RegionConfig) -> web.Application:
    """The region application for ``config`` (nothing is opened until it starts)."""
    app = web.Application(middlewares=[maas_errors, auth_middleware], client_max_size=MAX_BODY)
    handlers.add_routes(app)  # the MAAS API and describe/, from one declaration
    uploads.setup_uploads(app)
    rack_protocol.add_routes(app)  # also closes open rack event streams at shutdown
    peer_blobs.add_routes(app)  # /MAAS/cluster/blobs/{sha256}: this store, for peer regions
    app.router.add_get("/healthz", healthz)
    if not config.metrics_listen:  # else daemon.serve gives /metrics a listener of its own
        add_metrics_route(app, token=config.metrics_token)
    app[STOPPING] = asyncio.Event()
    app[metrics.LIVE_METRICS] = lambda: live_metrics(app)
    app.on_response_prepare.append(metrics.count_served(stream_web.STREAM_PREFIX + "/"))
    app[stream_web.STREAM_ROOT] = config.data_dir / "stream"
    app[stream_web.KEYRING_PATH] = config.data_dir / KEYRING_NAME
    stream_web.add_routes(app)
    app.middlewares.insert(0, api_hash_middleware(app[API_HASH]))
    app.cleanup_ctx.append(lambda app: region_context(app, config))
    await setup_ui(app, scheduler=lambda: app.get(AUTO_IMPORT))  # the Images page, /MAAS/r/images
    return app


async def healthz(request: web.Request) -> web.StreamResponse:
    """200 once the region's context is up; 503 with the reason while starting or stopping,
    or while the database cannot be reached (pinged, the answer cached a few seconds;
    the region keeps serving the files it holds meanwhile)."""
    ctx = request.app.get(CTX)
    if request.app[STOPPING].is_set():
        reason = "stopping"
    elif ctx is None:
        reason = "starting: the database and the region key are being opened"
    elif ctx.cluster is not None and not (state := await ctx.cluster.health.check()).up:
        reason = f"database unreachable: {state.reason}"
    else:
        return web.json_response({"ready": True, "importing": ctx.importer.is_importing()})
    return web.json_response({"ready": False, "reason": reason}, status=503)


@dataclass(frozen=True)
class ImportWork:
    """The region's work at shutdown (a :class:`common.ops.daemon.Work`): its imports."""

    app: web.Application
    name: str = "import"

    def close(self) -> None:
        """``/healthz`` says stopping; neither the scheduler nor a takeover starts imports."""
        self.app[STOPPING].set()
        if (scheduler := self.app.get(AUTO_IMPORT)) is not None:
            scheduler.shutdown()
        if (importer := self.app.get(IMPORTER)) is not None:
            importer.stop_watching()

    def running(self) -> bool:
        """True while an import runs in this region (another region's is its own business)."""
        importer = self.app.get(IMPORTER)
        return importer is not None and importer.running_here()

    async def finished(self) -> None:
        """Return once no import runs here."""
        if (importer := self.app.get(IMPORTER)) is not None:
            await importer.wait_idle()

    async def cancel(self) -> None:
        """Cancel the running import: it publishes only complete sets, keeps its partials,
        and stays pending in the cluster, so another region resumes it."""
        if (importer := self.app.get(IMPORTER)) is not None:
            await importer.stop(hand_over=True)


async def drain(app: web.Application, grace_s: float) -> None:
    """Shutdown, first step: no new imports; a running one gets ``grace_s`` to finish.

    The web server keeps serving meanwhile (``/healthz`` says 503 stopping). An
    import still running after ``grace_s`` is cancelled: it publishes only
    complete sets and keeps its partial downloads for the next start.
    """
    await daemon.drain(ImportWork(app), grace_s)


async def live_metrics(app: web.Application) -> list[Metric]:
    """Scrape-time values: sync and snapshot age, the state of every rack, the cluster's."""
    ctx = app.get(CTX)
    if ctx is None:
        return []
    cluster: list[Metric] = []
    if ctx.cluster is not None:
        importer = app.get(IMPORTER)
        held = importer is not None and importer.holds_lease()
        cluster = await cluster_metrics(ctx.cluster, lease_held=held)
        if not ctx.cluster.health.state.up:
            return cluster  # the rest is read from the database
    racks = await list_racks(ctx.db)
    connected = ctx.racks.connected_ids() if ctx.racks is not None else frozenset()
    who = [(r.system_id, r.hostname) for r in racks]
    return [
        *cluster,
        *metrics.gauge(
            "bootsync_seconds_since_last_successful_sync",
            "Seconds since the last import that ended ok.",
            metrics.seconds_since_success(await last_ok_import(ctx.db)),
        ),
        *metrics.gauge(
            "bootsync_snapshot_age_seconds",
            "Seconds since the published stream snapshot was first published.",
            await metrics.snapshot_age(ctx.publisher.root),
        ),
        metrics.labelled_gauge(
            "bootsync_rack_sync_state",
            "1 for the state each rack last reported (unknown: never reported), else 0.",
            ["system_id", "hostname", "state"],
            [
                ((*w, state), float((r.state or "unknown") == state))
                for w, r in zip(who, racks, strict=True)
                for state in (*SYNC_STATES, "unknown")
            ],
        ),
        metrics.labelled_gauge(
            "bootsync_rack_connected",
            "1 while the rack holds its event stream open.",
            ["system_id", "hostname"],
            [(w, float(r.system_id in connected)) for w, r in zip(who, racks, strict=True)],
        ),
        metrics.labelled_gauge(
            "bootsync_rack_seconds_since_last_sync",
            "Seconds since each rack last reported a successful sync.",
            ["system_id", "hostname"],
            [
                (w, age)
                for w, r in zip(who, racks, strict=True)
                if (age := _age(r.last_sync)) is not None
            ],
        ),
    ]


def _age(recorded: str | None) -> float | None:
    return metrics.seconds_since_success(recorded) if recorded else None


async def region_context(app: web.Application, config: RegionConfig) -> AsyncIterator[None]:
    """Open what the region needs, put it on ``app[CTX]``, and close it at shutdown."""
    data = config.data_dir
    await asyncio.to_thread(_prepare_data_dir, data)
    identity = RegionIdentity.from_config(config)
    async with (
        open_db(config.database) as db,
        open_events(db, identity.name) as events,
        make_session(user_agent=USER_AGENT) as session,
    ):
        key = await SigningKey.aopen_or_create(
            data / REGION_KEY_DIR, name="bootsync region", email="region@bootsync.invalid"
        )
        try:
            # The cluster's signing key and rack secret replace this region's own
            # (its own become the cluster's when it is the first region).
            # cluster_secrets.peer_token: what peers fetch blobs with.
            cluster_secrets = await adopt_cluster_secrets(db, data, key)
            key = cluster_secrets.key
            await asyncio.to_thread(
                write_if_changed, data / KEYRING_NAME, await key.aexport_public()
            )
            store = BlobStore(data / "store")
            publisher = SnapshotPublisher(data / "stream", store)
            racks = await open_rack_hub(data, publisher)
            catalogue = Catalogue(
                db,
                session,
                frozen_after_hours=config.frozen_after_hours,
                proxy=config.http_proxy,
                limits=config.transfer,
                max_item_size=config.max_item_size,
            )
            member = await ClusterMember.join(db, identity)
            importer = Importer(
                db,
                session,
                store=store,
                publisher=publisher,
                region_key=key,
                catalogue=catalogue,
                settings=ImportSettings.from_config(config),
                lease=ImportLease(db, identity),
                events=events,
            )
            app[IMPORTER] = importer
            app[CTX] = RegionContext(
                data_dir=data,
                db=db,
                session=session,
                store=store,
                publisher=publisher,
                region_key=key,
                importer=importer,
                catalogue=catalogue,
                config=config,
                racks=racks,
                events=events,
                cluster=member,
            )
            member.start()  # the heartbeat
            # Another region's import ended: is_importing() need not wait for the watcher.
            events.subscribe("import_finished", lambda _fields: importer.refresh_lease())

            async def auto_import_enabled() -> bool:
                return bool(await get_config(db, "boot_images_auto_import"))

            scheduler = AutoImport(
                importer,
                # set-config's boot_images_import_interval_minutes wins over the file's
                interval_minutes=await get_config_or(
                    db, "boot_images_import_interval_minutes", config.import_interval_minutes
                ),
                enabled=auto_import_enabled,
                # one region of the cluster runs each interval's import
                claim=lambda seconds: claim_auto_import(db, identity.name, interval_s=seconds),
            )
            importer.start_watching()  # resumes an import a dead region left pending
            scheduler.start()
            app[AUTO_IMPORT] = scheduler
            app[CTX].schedule = scheduler
            # Peers fetch this store's blobs; this region fetches theirs (region/cluster/peers.py).
            app[peer_blobs.PEER_BLOBS] = peer_blobs.PeerBlobSource(
                store, token=lambda: cluster_secrets.peer_token
            )
            peer_sync = await start_peer_sync(
                app[CTX],
                token=lambda: cluster_secrets.peer_token,
                user_agent=USER_AGENT,
                limits=config.transfer,
                concurrency=config.import_concurrency,
                importing_here=importer.running_here,
                wait_idle=importer.wait_idle,
            )
            log.info("region_started", fingerprint=key.fingerprint, data_dir=str(data))
            try:
                yield
            finally:
                if peer_sync is not None:
                    await peer_sync.close()
                racks.close()
                scheduler.shutdown()
                importer.stop_watching()
                await importer.stop(hand_over=True)
                await member.close()
                await catalogue.close()
        finally:
            await asyncio.to_thread(key.close)


def _prepare_data_dir(data: Path) -> None:
    """Create ``data`` 0750, or take from it what 0750 does not allow (logged)."""
    data.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    tighten_dir(data)
