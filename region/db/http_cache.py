"""Upstream metadata documents as last served, for conditional GETs (table ``http_cache``).

One row per URL: the document's bytes as fetched (signed) and its ETag /
Last-Modified. :class:`DatabaseDocumentCache` is the
:class:`~common.transfer.fetch.DocumentCache` the catalogue reads sources with.
"""

from __future__ import annotations

from common.transfer.fetch import CachedDocument
from region.db.connection import Database
from region.db.timestamps import now_iso


async def get_document(db: Database, url: str) -> CachedDocument | None:
    """The document kept for ``url``, or None."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT etag, last_modified, body FROM http_cache WHERE url = ?", (url,)
        ) as cur,
    ):
        row = await cur.fetchone()
    if row is None:
        return None
    return CachedDocument(
        body=bytes(row["body"]), etag=row["etag"], last_modified=row["last_modified"]
    )


async def put_document(db: Database, url: str, document: CachedDocument) -> None:
    """Keep ``document`` for ``url``, replacing what was kept."""
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO http_cache (url, etag, last_modified, body, stored_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET etag = excluded.etag, "
            "last_modified = excluded.last_modified, body = excluded.body, "
            "stored_at = excluded.stored_at",
            (url, document.etag, document.last_modified, document.body, now_iso()),
        )


class DatabaseDocumentCache:
    """The region database as a DocumentCache."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, url: str) -> CachedDocument | None:
        """The document kept for ``url``, or None."""
        return await get_document(self._db, url)

    async def put(self, url: str, document: CachedDocument) -> None:
        """Keep ``document`` for ``url``."""
        await put_document(self._db, url, document)
