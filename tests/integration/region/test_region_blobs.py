"""The ``region_blobs`` repository (region/cluster/holdings.py) on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.storage.blobstore import BlobStore
from region.cluster import holdings, registry
from region.db.connection import Database, open_db
from region.db.imports import WantedFile, WantedSet, set_bytes_done, write_wanted
from tests.fakes.postgres import PostgresServer

KERNEL, INITRD, SQUASHFS = b"kernel bytes", b"initrd bytes", b"squashfs bytes"


def sha(data: bytes) -> str:
    """The sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh region database on the engine under test."""
    if request.param == "sqlite":
        target: str | Path = tmp_path / "region.db"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        target = await server.new_database()
    async with open_db(target, readers=2) as opened:
        yield opened


async def two_images(db: Database) -> None:
    """noble (kernel + squashfs, complete) and jammy (initrd, complete), as an import writes them."""
    files = {"noble": (KERNEL, SQUASHFS), "jammy": (INITRD,)}
    wanted = [
        WantedSet(
            name=f"ubuntu/{series}",
            architecture="amd64/generic",
            kflavor="generic",
            bootloader_type=None,
            rolling=False,
            extra={},
            version="20250718",
            label="stable",
            files=tuple(
                WantedFile(f"f{n}", "root-image.gz", sha(data), len(data))
                for n, data in enumerate(blobs)
            ),
        )
        for series, blobs in files.items()
    ]
    await write_wanted(db, wanted, {})
    await set_bytes_done(db, {sha(d): len(d) for d in (KERNEL, INITRD, SQUASHFS)})


async def test_holdings_are_replaced_and_holders_are_the_live_regions_holding(
    db: Database, tmp_path: Path
) -> None:
    """A region's record is what its store holds now; holders() answers only the live ids given."""
    await two_images(db)
    a = await registry.join(db, "region-a", "http://a")
    b = await registry.join(db, "region-b", "http://b")
    store = BlobStore(tmp_path / "store")
    for data in (KERNEL, SQUASHFS):
        await store.ingest_bytes(data)
    assert await holdings.refresh_holdings(db, store, a.id)
    assert not await holdings.refresh_holdings(db, store, a.id)  # unchanged: nothing written
    assert await holdings.recorded_holdings(db, a.id) == {sha(KERNEL), sha(SQUASHFS)}
    await holdings.record_holdings(db, b.id, {sha(KERNEL)})
    await holdings.record_holdings(db, b.id, {sha(INITRD)})  # replaces, not adds
    assert await holdings.recorded_holdings(db, b.id) == {sha(INITRD)}
    wanted = [sha(KERNEL), sha(INITRD), sha(SQUASHFS)]
    assert await holdings.holders(db, wanted, [a.id, b.id]) == {
        sha(KERNEL): [a.id],
        sha(SQUASHFS): [a.id],
        sha(INITRD): [b.id],
    }
    assert await holdings.holders(db, wanted, [b.id]) == {sha(INITRD): [b.id]}


async def test_regions_lacking_names_per_image_the_live_regions_missing_a_blob(
    db: Database,
) -> None:
    """Each complete image lists the live regions missing any of its blobs, and no other."""
    await two_images(db)
    a = await registry.join(db, "region-a", "http://a")
    b = await registry.join(db, "region-b", "http://b")
    await holdings.record_holdings(db, a.id, {sha(KERNEL), sha(SQUASHFS), sha(INITRD)})
    await holdings.record_holdings(db, b.id, {sha(KERNEL), sha(INITRD)})  # noble's squashfs missing
    live = {a.id: a.name, b.id: b.name}
    lacking = await holdings.regions_lacking(db, live)
    assert list(lacking.values()) == [["region-b"]]
    assert await holdings.regions_lacking(db, {a.id: a.name}) == {}
    blobs = await holdings.complete_set_blobs(db)
    assert {x.sha256 for x in blobs} == {sha(KERNEL), sha(INITRD), sha(SQUASHFS)}
