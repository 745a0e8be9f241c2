-- PostgreSQL twin of ../0011_cluster.sql: the regions of a cluster, the blobs each
-- holds, the import lease and the shared secrets (region/cluster/).

CREATE TABLE regions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    url        TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);

CREATE TABLE region_blobs (
    region_id BIGINT NOT NULL REFERENCES regions (id) ON DELETE CASCADE,
    sha256    TEXT NOT NULL,
    PRIMARY KEY (region_id, sha256)
);

CREATE TABLE cluster_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT,
    expires_at TEXT,
    pending    TEXT,
    force      INTEGER NOT NULL DEFAULT 0 CHECK (force IN (0, 1)),
    updated    TEXT NOT NULL
);

CREATE TABLE cluster_secrets (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    created TEXT NOT NULL
);
