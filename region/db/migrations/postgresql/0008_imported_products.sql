-- PostgreSQL twin of ../0008_imported_products.sql.
CREATE TABLE imported_products (
    url         TEXT NOT NULL,
    content_id  TEXT NOT NULL,
    updated     TEXT,
    versions    TEXT NOT NULL DEFAULT '{}',
    imported_at TEXT NOT NULL,
    PRIMARY KEY (url, content_id)
);
