"""Which region's store holds which blob: the ``region_blobs`` table.

Each region records the blobs its own store verifiably holds (a committed blob,
hashed when it was written, whose size is the one the database names):
:func:`refresh_holdings` replaces the region's whole set in one transaction.
Peers ask :func:`holders` which live regions can serve a blob, and the status
asks :func:`regions_lacking` which live regions still lack the blobs of an
image's newest complete set. Only blobs the database references are recorded:
those are the only ones a peer ever asks for.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from common.storage.blobstore import BlobStore
from region.db.connection import Connection, Database
from region.db.resources import COMPLETE_SETS, atomic

# The newest set of each resource, when it is complete: the set its status is about.
_NEWEST_COMPLETE = (
    "SELECT s.id, s.resource_id FROM boot_resource_sets s "  # noqa: S608 - constants only
    "WHERE s.id = (SELECT MAX(n.id) FROM boot_resource_sets n "
    "WHERE n.resource_id = s.resource_id) "
    f"AND s.id IN ({COMPLETE_SETS})"
)


@dataclass(frozen=True)
class Blob:
    """A blob the database references, with the size its file rows give."""

    sha256: str
    size: int


async def referenced_blobs(db: Database) -> list[Blob]:
    """Every blob some file row names, with its size."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT sha256, MAX(size) AS size FROM boot_resource_files "
            "GROUP BY sha256 ORDER BY sha256"
        ) as cur,
    ):
        return [Blob(row["sha256"], int(row["size"])) for row in await cur.fetchall()]


async def complete_set_blobs(db: Database) -> list[Blob]:
    """Every blob of a complete set (what publishing needs), with its size."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT sha256, MAX(size) AS size FROM boot_resource_files "  # noqa: S608
            f"WHERE set_id IN ({COMPLETE_SETS}) GROUP BY sha256 ORDER BY sha256"
        ) as cur,
    ):
        return [Blob(row["sha256"], int(row["size"])) for row in await cur.fetchall()]


async def held_by_store(store: BlobStore, blobs: Iterable[Blob]) -> set[str]:
    """The sha256 of ``blobs`` the store holds complete, at their size (stat off the loop)."""
    wanted = {b.sha256: b.size for b in blobs}
    held = await store.held_bytes(wanted)
    return {sha for sha, size in wanted.items() if held.get(sha) == size}


async def record_holdings(db: Database, region_id: int, held: Collection[str]) -> None:
    """Replace region ``region_id``'s recorded blobs with ``held``, in one transaction."""

    async def work(conn: Connection) -> None:
        await conn.execute("DELETE FROM region_blobs WHERE region_id = ?", (region_id,))
        if held:
            await conn.executemany(
                "INSERT INTO region_blobs (region_id, sha256) VALUES (?, ?)",
                [(region_id, sha) for sha in sorted(held)],
            )

    await atomic(db, work)


async def refresh_holdings(db: Database, store: BlobStore, region_id: int) -> bool:
    """Record what ``store`` holds of the referenced blobs as region ``region_id``'s.

    True when that changed the record (nothing is written otherwise).
    """
    held = await held_by_store(store, await referenced_blobs(db))
    if held == await recorded_holdings(db, region_id):
        return False
    await record_holdings(db, region_id, held)
    return True


async def recorded_holdings(db: Database, region_id: int) -> set[str]:
    """The blobs recorded for region ``region_id``."""
    async with (
        db.read() as conn,
        conn.execute("SELECT sha256 FROM region_blobs WHERE region_id = ?", (region_id,)) as cur,
    ):
        return {row["sha256"] for row in await cur.fetchall()}


async def holders(
    db: Database, sha256s: Collection[str], live: Collection[int]
) -> dict[str, list[int]]:
    """For each of ``sha256s``, the ids (ascending) of the ``live`` regions recorded as holding it.

    A blob no live region holds is absent from the answer.
    """
    if not sha256s or not live:
        return {}
    wanted, ids = set(sha256s), sorted(live)
    marks = ", ".join("?" for _ in ids)
    async with (
        db.read() as conn,
        conn.execute(
            f"SELECT region_id, sha256 FROM region_blobs WHERE region_id IN ({marks}) "  # noqa: S608
            "ORDER BY region_id",
            tuple(ids),
        ) as cur,
    ):
        rows = await cur.fetchall()
    found: dict[str, list[int]] = {}
    for row in rows:
        if row["sha256"] in wanted:
            found.setdefault(row["sha256"], []).append(int(row["region_id"]))
    return found


async def regions_lacking(db: Database, live: Mapping[int, str]) -> dict[int, list[str]]:
    """Resource id → names (sorted) of the ``live`` regions (id → name) lacking a blob of its
    newest set, for each resource whose newest set is complete and not held everywhere.
    """
    if not live:
        return {}
    ids = sorted(live)
    marks = ", ".join("?" for _ in ids)
    async with (
        db.read() as conn,
        conn.execute(
            f"SELECT DISTINCT c.resource_id, g.id AS region_id FROM ({_NEWEST_COMPLETE}) c "  # noqa: S608
            "JOIN boot_resource_files f ON f.set_id = c.id "
            f"JOIN regions g ON g.id IN ({marks}) "
            "WHERE NOT EXISTS (SELECT 1 FROM region_blobs b "
            "WHERE b.region_id = g.id AND b.sha256 = f.sha256)",
            tuple(ids),
        ) as cur,
    ):
        rows = await cur.fetchall()
    lacking: dict[int, list[str]] = {}
    for row in rows:
        lacking.setdefault(int(row["resource_id"]), []).append(live[int(row["region_id"])])
    return {rid: sorted(names) for rid, names in lacking.items()}
