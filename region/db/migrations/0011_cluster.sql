-- Several regions on one database (region/cluster/): who they are, which blobs
-- each holds, the import lease, and the secrets every region must share.

-- One row per region process that ever joined; ``last_seen`` is its heartbeat.
CREATE TABLE regions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    url        TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);

-- The verified blobs each region's own store holds.
CREATE TABLE region_blobs (
    region_id INTEGER NOT NULL REFERENCES regions (id) ON DELETE CASCADE,
    sha256    TEXT NOT NULL,
    PRIMARY KEY (region_id, sha256)
);

-- Named leases: 'import' (one import at a time in the cluster) and the like.
-- ``pending`` holds the reason of an import asked for and not yet finished, so a
-- region taking over an expired lease resumes it.
CREATE TABLE cluster_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT,
    expires_at TEXT,
    pending    TEXT,
    force      INTEGER NOT NULL DEFAULT 0 CHECK (force IN (0, 1)),
    updated    TEXT NOT NULL
);

-- Secrets shared by every region: the stream signing key, the rack secret, the
-- token regions fetch blobs from each other with.
CREATE TABLE cluster_secrets (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    created TEXT NOT NULL
);
