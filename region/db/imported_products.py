"""The rollback guard's memory of products documents (table ``imported_products``).

Per source URL and content id: the ``updated`` of the products document last
imported and the newest version of each of its products. The importer refuses
a document older than that, or one in which a product's newest version goes
backwards, unless forced. Functions take the :class:`~region.db.connection.Database`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from region.db.connection import Database
from region.db.timestamps import now_iso


@dataclass(frozen=True, slots=True)
class ImportedProducts:
    """What was last imported of one products document."""

    updated: str | None
    versions: Mapping[str, str]  # product name -> newest version name


async def last_imported_products(
    db: Database, url: str, content_id: str
) -> ImportedProducts | None:
    """What was last imported of document ``content_id`` from the source at ``url``, if ever."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT updated, versions FROM imported_products WHERE url = ? AND content_id = ?",
            (url, content_id),
        ) as cur,
    ):
        row = await cur.fetchone()
    if row is None:
        return None
    return ImportedProducts(updated=row["updated"], versions=dict(json.loads(row["versions"])))


async def remember_imported_products(
    db: Database, url: str, content_id: str, *, updated: str | None, versions: Mapping[str, str]
) -> None:
    """Record document ``content_id`` of ``url`` as imported with ``updated`` and ``versions``.

    Products absent from ``versions`` keep the version remembered before (a
    product that leaves and comes back older is still a rollback); a document
    without ``updated`` keeps the one remembered before.
    """
    async with db.write() as conn:
        async with conn.execute(
            "SELECT updated, versions FROM imported_products WHERE url = ? AND content_id = ?",
            (url, content_id),
        ) as cur:
            row = await cur.fetchone()
        merged = dict(json.loads(row["versions"])) if row is not None else {}
        merged.update(versions)
        if updated is None and row is not None:
            updated = row["updated"]
        await conn.execute(
            "INSERT INTO imported_products (url, content_id, updated, versions, imported_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (url, content_id) DO UPDATE SET "
            "updated = excluded.updated, versions = excluded.versions, "
            "imported_at = excluded.imported_at",
            (url, content_id, updated, json.dumps(merged, sort_keys=True), now_iso()),
        )
