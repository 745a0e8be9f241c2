-- Upstream metadata documents as last served (region/db/http_cache.py): the bytes
-- (signed, as fetched) with the ETag and Last-Modified that came with them, so the
-- next read of the source asks conditionally and reuses the bytes on 304.
CREATE TABLE http_cache (
    url           TEXT PRIMARY KEY,
    etag          TEXT,
    last_modified TEXT,
    body          BLOB NOT NULL,
    stored_at     TEXT NOT NULL
);
