-- The rollback guard per products document: for each source URL and content id,
-- the `updated` of the document last imported and the newest version of each of
-- its products then. A document older than that, or one in which a product's
-- newest version goes backwards, is refused unless the import is forced (a
-- current index served with an older, validly signed products document).
-- Keyed by URL like imported_index, so deleting and re-adding a source keeps it.
CREATE TABLE imported_products (
    url         TEXT NOT NULL,
    content_id  TEXT NOT NULL,
    updated     TEXT,                       -- the document's own `updated`, if it had one
    versions    TEXT NOT NULL DEFAULT '{}', -- JSON: product name -> newest version name
    imported_at TEXT NOT NULL,
    PRIMARY KEY (url, content_id)
);
