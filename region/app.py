"""The region's aiohttp application: routes, middlewares, and what they share.

Resources are acquired in one ``cleanup_ctx`` generator, in the order they
depend on each other, and released in reverse: the scheduler stops first, then
a running import is cancelled (its partial downloads stay for a resume), then
the HTTP session, the signing key's agent and the database are closed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from common.blobstore import BlobStore
from common.gpgkeys import SigningKey
from common.http import make_session
from common.logging import get_logger
from common.snapshot import SnapshotPublisher
from region import web as stream_web
from region.api import (
    boot_resources,
    boot_sources,
    maas_config,
    rack_controllers,
    rack_protocol,
    selections,
    users,
)
from region.api.catalogue import SOURCE_OPS
from region.api.http import API_ROOT, api_hash_middleware, maas_errors
from region.auth import auth_middleware
from region.catalogue import Catalogue
from region.config import RegionConfig
from region.context import CTX, RegionContext
from region.db import open_db
from region.import_steps import ImportSettings
from region.importer import Importer
from region.racks import open_rack_hub
from region.repo_config import get_config
from region.scheduler import AutoImport

log = get_logger("region")

USER_AGENT = "bootsync-regiond/0.1"
REGION_KEY_DIR = "gnupg"
MAX_BODY = 64 << 20  # multipart uploads of keyrings and small images
AUTO_IMPORT = web.AppKey("auto_import", AutoImport)


async def build_app(config: RegionConfig) -> web.Application:
    """The region application for ``config`` (nothing is opened until it starts)."""
    app = web.Application(middlewares=[maas_errors, auth_middleware], client_max_size=MAX_BODY)
    boot_sources.add_routes(app, source_ops=SOURCE_OPS)
    selections.add_routes(app)
    boot_resources.add_routes(app)
    maas_config.add_routes(app)
    users.add_routes(app)
    rack_controllers.add_routes(app)
    rack_protocol.add_routes(app)  # also closes open rack event streams at shutdown
    app.router.add_get("/healthz", healthz)
    app[stream_web.STREAM_ROOT] = config.data_dir / "stream"
    app[stream_web.KEYRING_PATH] = config.data_dir / stream_web.KEYRING_NAME
    stream_web.add_routes(app)
    app.middlewares.insert(0, api_hash_middleware(api_hash(app)))
    app.cleanup_ctx.append(lambda app: region_context(app, config))
    return app


def api_hash(app: web.Application) -> str:
    """A digest of the API's routes, sent as ``X-MAAS-API-Hash`` (changes with the API)."""
    signature = sorted(f"{r.method} {r.resource.canonical}" for r in app.router.routes()
                       if r.resource is not None and r.resource.canonical.startswith(API_ROOT))
    return hashlib.sha1("\n".join(signature).encode(), usedforsecurity=False).hexdigest()


async def healthz(request: web.Request) -> web.StreamResponse:
    """200 once the region's context is up (load balancers and systemd checks)."""
    ctx = request.app.get(CTX)
    status = 200 if ctx is not None else 503
    return web.json_response({"ready": ctx is not None,
                              "importing": bool(ctx and ctx.importer.is_importing())},
                             status=status)


async def region_context(app: web.Application, config: RegionConfig) -> AsyncIterator[None]:
    """Open what the region needs, put it on ``app[CTX]``, and close it at shutdown."""
    data = config.data_dir
    await asyncio.to_thread(_prepare_data_dir, data)
    async with open_db(config.db_path) as db, make_session(user_agent=USER_AGENT) as session:
        key = await SigningKey.aopen_or_create(data / REGION_KEY_DIR, name="bootsync region",
                                               email="region@bootsync.invalid")
        try:
            await asyncio.to_thread(_write_if_changed, data / stream_web.KEYRING_NAME,
                                    await key.aexport_public())
            store = BlobStore(data / "store")
            publisher = SnapshotPublisher(data / "stream", store)
            racks = await open_rack_hub(data, publisher)
            catalogue = Catalogue(db, session, frozen_after_hours=config.frozen_after_hours,
                                  proxy=config.http_proxy)
            importer = Importer(db, session, store=store, publisher=publisher, region_key=key,
                                catalogue=catalogue,
                                settings=ImportSettings.from_config(config))
            app[CTX] = RegionContext(data_dir=data, db=db, session=session, store=store,
                                     publisher=publisher, region_key=key, importer=importer,
                                     catalogue=catalogue, config=config, racks=racks)

            async def auto_import_enabled() -> bool:
                return bool(await get_config(db, "boot_images_auto_import"))

            scheduler = AutoImport(importer, interval_minutes=config.import_interval_minutes,
                                   enabled=auto_import_enabled)
            scheduler.start()
            app[AUTO_IMPORT] = scheduler
            log.info("region_started", fingerprint=key.fingerprint, data_dir=str(data))
            try:
                yield
            finally:
                racks.close()
                scheduler.shutdown()
                await importer.stop()
                await catalogue.close()
        finally:
            await asyncio.to_thread(key.close)


def _prepare_data_dir(data: Path) -> None:
    data.mkdir(mode=0o750, parents=True, exist_ok=True)


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
