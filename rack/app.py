"""The rack's aiohttp application and the services it runs beside the web server.

Data directory::

    rack.json, region-keyring.gpg   who the rack is (its credential: 0600), the pinned
                                    region key (rack.identity)
    last-sync.json                  the last successful sync (rack.status)
    cache/                          content-addressed blobs and partial downloads
    boot-resources/current -> snapshots/<id>   what /images/ serves

The parts are opened in one ``cleanup_ctx`` generator and closed in reverse:
the sync loop is cancelled first (a running pull stops; its partial downloads
stay and resume on the next start), then the region link, then the session.
Before that, at SIGTERM, :func:`drain` lets no new pull start and gives a
running one a grace period to finish (:class:`PullWork`). The TFTP server
(rack/tftp/) runs beside the web server and stops before the rest. ``/metrics``
is the Prometheus exposition (where and for whom: common/ops/metrics_access.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric

from common.ops import daemon, metrics
from common.ops.logging import get_logger
from common.ops.metrics_access import add_metrics_route
from common.ops.tomlconfig import check_host_port
from common.rackproto import SYNC_STATES
from common.storage.blobstore import BlobStore
from common.storage.modes import DATA_DIR_MODE, tighten_dir
from common.storage.snapshot import SnapshotPublisher
from common.transfer.download import Downloader
from common.transfer.http import make_session
from common.version import user_agent
from rack import web as rack_web
from rack.bootconfig import BootConfig
from rack.config import RackConfig
from rack.identity import RackIdentity
from rack.link import RegionHealth, RegionLink
from rack.loop import SyncLoop
from rack.pull import PullContext, run_pull
from rack.region_client import RegionClient
from rack.status import StatusBoard
from rack.tftp.server import TftpServer, TftpSettings

log = get_logger("rack")

USER_AGENT = user_agent("bootsync-rackd")
CACHE_DIR = "cache"
BOOT_RESOURCES_DIR = "boot-resources"


class PullGate:
    """Lets the sync loop's pulls through until closed, and tells when none runs."""

    def __init__(self) -> None:
        self.closed = False
        self.idle = asyncio.Event()
        self.idle.set()

    async def sync(self, pull: PullContext, reason: str) -> bool:
        """One pull for the sync loop (see :func:`sync_once`), unless the gate is closed."""
        if self.closed:
            log.info("pull_skipped", reason="the rack is stopping", trigger=reason)
            return False
        self.idle.clear()
        try:
            return await sync_once(pull, reason)
        finally:
            self.idle.set()


@dataclass
class RackContext:
    """The running parts of one rack."""

    config: RackConfig
    pull: PullContext
    link: RegionLink
    loop: SyncLoop
    gate: PullGate
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        """Start the region link, and the sync loop once a registration confirmed the key."""
        self.tasks = [
            asyncio.create_task(self.link.run(), name="region-link"),
            asyncio.create_task(self._sync_when_pinned(), name="sync-loop"),
        ]
        for task in self.tasks:
            task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        """Cancel the sync loop, then the link; wait for both."""
        for task in reversed(self.tasks):
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        self.tasks = []

    async def _sync_when_pinned(self) -> None:
        # Even with a key pinned by an earlier run: the region may offer another now.
        await self.link.accepted.wait()
        await self.loop.run()


async def sync_once(pull: PullContext, reason: str) -> bool:
    """One pull for the sync loop; True when a failure should be retried soon.

    An operator's import (``import`` among the reasons) re-reads the region's
    index even when it did not change.
    """
    force = "import" in reason.split(",")
    return (await run_pull(pull, reason=reason, force=force)).retry_soon


@asynccontextmanager
async def open_rack(config: RackConfig) -> AsyncIterator[RackContext]:
    """Open the rack's parts for ``config`` (nothing runs until :meth:`RackContext.start`)."""
    data = config.data_dir
    await asyncio.to_thread(_prepare_data_dir, data)
    async with make_session(user_agent=USER_AGENT) as session:
        identity = RackIdentity(data)
        await identity.load()
        store = BlobStore(data / CACHE_DIR)
        await store.prepare()
        publisher = SnapshotPublisher(data / BOOT_RESOURCES_DIR, store)
        status = StatusBoard(data)
        await status.load(publisher.current_link)
        health = RegionHealth()
        client = RegionClient(session, config.region_urls, config.secret)
        pull = PullContext(
            client=client,
            identity=identity,
            status=status,
            health=health,
            store=store,
            publisher=publisher,
            downloader=Downloader(session, store, limits=config.transfer),
            concurrency=config.concurrency,
        )
        gate = PullGate()
        loop = SyncLoop(lambda reason: gate.sync(pull, reason), interval_s=config.interval_s)
        link = RegionLink(
            client,
            identity,
            status,
            health,
            hostname=config.rack_name,
            rack_url=config.rack_url,
            on_sync_request=loop.request,
        )
        yield RackContext(config=config, pull=pull, link=link, loop=loop, gate=gate)


RACK = web.AppKey("rack", RackContext)
TFTP = web.AppKey("tftp", TftpServer)


def build_app(config: RackConfig) -> web.Application:
    """The rack application for ``config`` (nothing is opened until it starts)."""
    app = web.Application()
    app[rack_web.BOOT_RESOURCES] = config.data_dir / BOOT_RESOURCES_DIR
    app[rack_web.BOOT_CONFIG] = boot_config(config)
    rack_web.add_routes(app)
    if not config.metrics_listen:  # else daemon.serve gives /metrics a listener of its own
        add_metrics_route(app, token=config.metrics_token)
    app[metrics.LIVE_METRICS] = lambda: live_metrics(app)
    app.on_response_prepare.append(metrics.count_served(rack_web.IMAGES_PREFIX + "/"))
    app.cleanup_ctx.append(lambda app: rack_context(app, config))
    return app


@dataclass(frozen=True)
class PullWork:
    """The rack's work at shutdown (a :class:`common.ops.daemon.Work`): its pulls."""

    app: web.Application
    name: str = "pull"

    def close(self) -> None:
        """The sync loop's next pull is skipped (logged)."""
        if (ctx := self.app.get(RACK)) is not None:
            ctx.gate.closed = True

    def running(self) -> bool:
        """True while a pull runs."""
        ctx = self.app.get(RACK)
        return ctx is not None and not ctx.gate.idle.is_set()

    async def finished(self) -> None:
        """Return once no pull runs."""
        if (ctx := self.app.get(RACK)) is not None:
            await ctx.gate.idle.wait()

    async def cancel(self) -> None:
        """Stop the sync loop and the link: ``current`` stays, partial files are kept."""
        if (ctx := self.app.get(RACK)) is not None:
            await ctx.stop()


async def drain(app: web.Application, grace_s: float) -> None:
    """Shutdown, first step: no new pull; a running one gets ``grace_s`` to finish, then is
    cancelled (the web side keeps serving)."""
    await daemon.drain(PullWork(app), grace_s)


async def live_metrics(app: web.Application) -> list[Metric]:
    """Scrape-time values: sync and snapshot age, sync state, whether the region answers."""
    ctx = app.get(RACK)
    if ctx is None:
        return []
    tftp = app.get(TFTP)
    status, health = ctx.pull.status, ctx.pull.health
    recorded = status.record.last_sync if status.record is not None else None
    reachable = None if health.reachable is None else float(health.reachable)
    return [
        *metrics.gauge(
            "bootsync_seconds_since_last_successful_sync",
            "Seconds since the last pull that ended ok or found nothing new.",
            metrics.seconds_since_success(recorded),
        ),
        *metrics.gauge(
            "bootsync_snapshot_age_seconds",
            "Seconds since the served snapshot was first published on this rack.",
            await metrics.snapshot_age(ctx.pull.publisher.root),
        ),
        metrics.labelled_gauge(
            "bootsync_sync_state",
            "1 for the rack's sync state, else 0.",
            ["state"],
            [((state,), float(status.status.state == state)) for state in SYNC_STATES],
        ),
        *metrics.gauge(
            "bootsync_region_reachable",
            "1 when the region answered the last request, 0 when it did not.",
            reachable,
        ),
        *(tftp_metrics(tftp) if tftp is not None else []),
    ]


def tftp_metrics(tftp: TftpServer) -> list[Metric]:
    """The TFTP server's counters: files and bytes sent, packets sent again, transfers
    refused or failed, and the transfers running now."""
    stats = tftp.stats
    errors = CounterMetricFamily(
        "bootsync_tftp_errors",
        "TFTP requests refused or transfers failed, by reason.",
        labels=["reason"],
    )
    for reason, count in sorted(stats.errors.items()):
        errors.add_metric([reason], count)
    return [
        CounterMetricFamily(
            "bootsync_tftp_files", "Files sent whole over TFTP.", value=stats.files
        ),
        CounterMetricFamily(
            "bootsync_tftp_bytes",
            "File bytes sent over TFTP and acknowledged (retransmissions not counted).",
            value=stats.bytes,
        ),
        CounterMetricFamily(
            "bootsync_tftp_retransmits",
            "TFTP packets (OACK, DATA) sent again after the client's ACK did not come in time.",
            value=stats.retransmits,
        ),
        errors,
        *metrics.gauge(
            "bootsync_tftp_active_sessions", "TFTP transfers running now.", stats.active
        ),
    ]


def boot_config(config: RackConfig) -> BootConfig:
    """How ``config`` serves boot config templates (rack/bootconfig.py)."""
    return BootConfig(
        templates_dir=config.boot_templates_dir,
        rack_url=config.rack_url,
        http_port=config.listen_port,
        advertised=bool(config.advertise_url),
        http_wildcard=config.listen_host in ("0.0.0.0", "::"),  # noqa: S104
    )


async def start_tftp(app: web.Application, config: RackConfig) -> TftpServer | None:
    """Start the TFTP server of ``config`` (None when switched off or its port cannot be
    bound: logged as ``tftp_unavailable``, HTTP serves on)."""
    if not config.tftp_enabled:
        return None
    host, port = check_host_port(config.tftp_listen)
    server = TftpServer(
        config.data_dir / BOOT_RESOURCES_DIR,
        TftpSettings(
            host=host,
            port=port,
            max_blksize=config.tftp_max_blksize,
            max_windowsize=config.tftp_max_windowsize,
            max_sessions=config.tftp_max_sessions,
        ),
        boot=boot_config(config),
    )
    try:
        await server.start()
    except OSError as exc:
        log.error("tftp_unavailable", listen=config.tftp_listen, error=str(exc))  # noqa: TRY400 - e.g. port in use
        return None
    app[TFTP] = server
    return server


async def rack_context(app: web.Application, config: RackConfig) -> AsyncIterator[None]:
    """Open the rack, run its services while the app runs, stop them at shutdown."""
    async with open_rack(config) as ctx:
        app[RACK] = ctx
        app[rack_web.PROBLEM_SOURCE] = ctx.link
        ctx.start()
        tftp = await start_tftp(app, config)
        log.info(
            "rack_started",
            data_dir=str(config.data_dir),
            regions=config.region_urls,
            url=config.rack_url,
            interval_minutes=config.interval_minutes,
            system_id=ctx.pull.identity.system_id,
            snapshot=await ctx.pull.publisher.current_id(),
        )
        try:
            yield
        finally:
            if tftp is not None:
                await tftp.stop()
            await ctx.stop()


def _prepare_data_dir(data: Path) -> None:
    """Create ``data`` 0750, or take from it what 0750 does not allow (logged)."""
    data.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    tighten_dir(data)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("rack_task_crashed", task=task.get_name(), error=repr(task.exception()))
