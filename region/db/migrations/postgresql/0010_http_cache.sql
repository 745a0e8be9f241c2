-- PostgreSQL twin of ../0010_http_cache.sql: upstream metadata documents as last
-- served, for conditional GETs (region/db/http_cache.py).
CREATE TABLE http_cache (
    url           TEXT PRIMARY KEY,
    etag          TEXT,
    last_modified TEXT,
    body          BYTEA NOT NULL,
    stored_at     TEXT NOT NULL
);
