-- PostgreSQL twin of ../0003_racks.sql.

CREATE TABLE racks (
    system_id   TEXT PRIMARY KEY CHECK (length(system_id) = 6),
    hostname    TEXT NOT NULL,
    url         TEXT NOT NULL,
    registered  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    state       TEXT CHECK (state IN ('idle', 'syncing', 'synced', 'failed')),
    snapshot_id TEXT,
    images      TEXT NOT NULL DEFAULT '[]',
    last_sync   TEXT,
    error       TEXT,
    updated     TEXT
);
