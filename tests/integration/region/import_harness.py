"""A region import environment for tests: real SQLite, store, gpg and a fake upstream.

``import_env`` opens the database and blob store under a directory and builds
the real Catalogue and Importer; opening it again on the same directory is a
region restart. Helpers add a source for a sample stream and rewrite a
stream's signed documents (an older index, products removed).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.storage.blobstore import BlobStore
from common.storage.snapshot import SnapshotPublisher
from common.transfer.http import make_session
from common.trust.keyrings import SigningKey
from region.db import resources as repo_resources
from region.db import sources as repo_sources
from region.db.connection import Database, open_db
from region.db.sources import BootSource
from region.images.catalogue import Catalogue
from region.images.importer import Importer, ImportSettings
from simplestreams.screen import DEFAULT_MAX_ITEM_SIZE
from tests.fakes.upstream import FakeUpstream

FILE_SIZE = 16 << 10
V3 = "com.ubuntu.maas:stable:v3:download"
BOOTLOADERS = "com.ubuntu.maas:stable:1:bootloader-download"
NEWER = date(2025, 8, 15)


@dataclass
class ImportEnv:
    """One region's import machinery over ``root``."""

    root: Path
    db: Database
    session: aiohttp.ClientSession
    store: BlobStore
    publisher: SnapshotPublisher
    catalogue: Catalogue
    importer: Importer

    async def add_source(
        self,
        upstream: FakeUpstream,
        stream: SampleStream,
        *,
        releases: tuple[str, ...] = ("noble",),
        arches: tuple[str, ...] = ("amd64",),
    ) -> BootSource:
        """A source for ``stream`` served by ``upstream``, selecting ``releases`` on ``arches``."""
        source = await repo_sources.create_source(
            self.db, url=upstream.url("/"), keyring_data=stream.keyring.read_bytes()
        )
        for release in releases:
            await repo_sources.create_selection(
                self.db,
                source.id,
                os="ubuntu",
                release=release,
                arches=arches,
                subarches=["*"],
                labels=["*"],
            )
        return source


@asynccontextmanager
async def import_env(
    root: Path,
    region_key: SigningKey,
    *,
    frozen_after_hours: float = 72,
    max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
    **settings: Any,
) -> AsyncIterator[ImportEnv]:
    """Open (or reopen) a region's database, store and stream under ``root``.

    ``frozen_after_hours`` and ``max_item_size`` go to the Catalogue, ``settings``
    to the importer's ImportSettings (whose ``transfer`` limits the Catalogue shares).
    """
    chosen = replace(
        ImportSettings(create_default_source=False, progress_interval_s=0.02), **settings
    )
    root.mkdir(parents=True, exist_ok=True)
    store = BlobStore(root / "store")
    publisher = SnapshotPublisher(root / "stream", store)
    async with (
        open_db(root / "region.db") as db,
        make_session(user_agent="bootsync-test") as session,
    ):
        catalogue = Catalogue(
            db,
            session,
            frozen_after_hours=frozen_after_hours,
            max_item_size=max_item_size,
            limits=chosen.transfer,  # metadata read as the importer downloads: same minimum rate
        )
        importer = Importer(
            db,
            session,
            store=store,
            publisher=publisher,
            region_key=region_key,
            catalogue=catalogue,
            settings=chosen,
        )
        try:
            yield ImportEnv(
                root=root,
                db=db,
                session=session,
                store=store,
                publisher=publisher,
                catalogue=catalogue,
                importer=importer,
            )
        finally:
            await importer.stop()
            await catalogue.close()


def sample_stream(
    root: Path,
    key: SigningKey,
    *,
    newest: date = date(2025, 7, 18),
) -> SampleStream:
    """A one-version signed sample stream with small files, signed by ``key``."""
    return write_sample_stream(
        root, file_size=FILE_SIZE, versions=1, newest=newest, signing_key=key
    )


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"


def resign_index(stream: SampleStream, key: SigningKey, *, updated: str) -> None:
    """Rewrite the stream's index (json and sjson) with ``updated``, signed by ``key``."""
    meta = stream.root / "streams" / "v1"
    index = json.loads((meta / "index.json").read_bytes())
    index["updated"] = updated
    for entry in index["index"].values():
        entry["updated"] = updated
    (meta / "index.json").write_bytes(_dump(index))
    for entry in index["index"].values():
        entry["path"] = entry["path"].removesuffix(".json") + ".sjson"
    (meta / "index.sjson").write_bytes(key.clearsign(_dump(index)))


def drop_products(
    stream: SampleStream, key: SigningKey, content_id: str, gone: Callable[[dict[str, Any]], bool]
) -> None:
    """Remove the products for which ``gone(product)`` holds from one signed document."""
    meta = stream.root / "streams" / "v1"
    doc = json.loads((meta / f"{content_id}.json").read_bytes())
    doc["products"] = {k: p for k, p in doc["products"].items() if not gone(p)}
    (meta / f"{content_id}.json").write_bytes(_dump(doc))
    (meta / f"{content_id}.sjson").write_bytes(key.clearsign(_dump(doc)))
    index = json.loads((meta / "index.json").read_bytes())
    index["index"][content_id]["products"] = sorted(doc["products"])
    (meta / "index.json").write_bytes(_dump(index))
    for entry in index["index"].values():
        entry["path"] = entry["path"].removesuffix(".json") + ".sjson"
    (meta / "index.sjson").write_bytes(key.clearsign(_dump(index)))


def item_paths(upstream: FakeUpstream) -> list[str]:
    """Paths of the file (not metadata) requests the upstream received, in order."""
    return [r.path for r in upstream.requests if not r.path.startswith("/streams/")]


NOBLE_AMD64 = {("ubuntu/noble", "amd64/ga-24.04"), ("ubuntu/noble", "amd64/hwe-24.04")}
KERNEL = "noble/amd64/20250718/ga-24.04/generic/boot-kernel"


@dataclass
class Scene:
    """Where the region lives, both keys, and the upstream serving a fresh sample stream."""

    root: Path
    region_key: SigningKey
    upstream_key: SigningKey
    upstream: FakeUpstream
    stream: SampleStream


async def held(db: Database) -> dict[tuple[str, str], list[str]]:
    """(name, architecture) -> versions of the complete sets the region holds."""
    return {r.key: [s.version for s in sets] for r, sets in await repo_resources.complete_sets(db)}
