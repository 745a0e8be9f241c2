-- Boot-source catalogue, per-source status, boot resources (images), their sets
-- (versions) and files, the import history and the rollback guard.
-- Timestamps are ISO 8601 UTC text (region.api.http.now_iso); JSON columns are text.

-- One row per image a source advertises (MAAS's boot-source cache).
CREATE TABLE boot_source_cache (
    id               INTEGER PRIMARY KEY,
    boot_source_id   INTEGER NOT NULL REFERENCES boot_sources(id) ON DELETE CASCADE,
    os               TEXT NOT NULL,
    arch             TEXT NOT NULL,
    subarch          TEXT NOT NULL,
    release          TEXT NOT NULL,
    label            TEXT NOT NULL,
    kflavor          TEXT,
    bootloader_type  TEXT,
    release_codename TEXT,
    release_title    TEXT,
    support_eol      TEXT,
    extra            TEXT NOT NULL DEFAULT '{}',
    created          TEXT NOT NULL,
    updated          TEXT NOT NULL,
    UNIQUE (boot_source_id, os, arch, subarch, release, label)
);

-- What the region last learnt about each source: errors, warnings, index freshness.
CREATE TABLE boot_source_status (
    boot_source_id     INTEGER PRIMARY KEY REFERENCES boot_sources(id) ON DELETE CASCADE,
    last_error         TEXT,
    last_error_at      TEXT,
    warnings           TEXT NOT NULL DEFAULT '[]',  -- JSON list of strings
    last_index_updated TEXT,  -- the upstream index's own `updated` value
    index_changed_at   TEXT,  -- when we first saw that value
    last_checked_at    TEXT
);

-- The rollback guard: the newest index `updated` imported per URL. Keyed by URL,
-- not by source id, so deleting and re-adding a source keeps the guard.
CREATE TABLE imported_index (
    url           TEXT PRIMARY KEY,
    index_updated TEXT NOT NULL,
    imported_at   TEXT NOT NULL
);

-- rtype: 0 synced, 1 generated (legacy, unused), 2 uploaded.
CREATE TABLE boot_resources (
    id              INTEGER PRIMARY KEY,
    rtype           INTEGER NOT NULL,
    name            TEXT NOT NULL,
    architecture    TEXT NOT NULL,
    kflavor         TEXT,
    bootloader_type TEXT,
    rolling         INTEGER NOT NULL DEFAULT 0,
    base_image      TEXT NOT NULL DEFAULT '',
    extra           TEXT NOT NULL DEFAULT '{}',
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    UNIQUE (name, architecture)
);

CREATE TABLE boot_resource_sets (
    id          INTEGER PRIMARY KEY,
    resource_id INTEGER NOT NULL REFERENCES boot_resources(id) ON DELETE CASCADE,
    version     TEXT NOT NULL,
    label       TEXT NOT NULL,
    created     TEXT NOT NULL,
    UNIQUE (resource_id, version)
);

-- bytes_done == size means the blob is in the store; progress = bytes_done / size.
CREATE TABLE boot_resource_files (
    id         INTEGER PRIMARY KEY,
    set_id     INTEGER NOT NULL REFERENCES boot_resource_sets(id) ON DELETE CASCADE,
    filename   TEXT NOT NULL,
    filetype   TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    extra      TEXT NOT NULL DEFAULT '{}',
    UNIQUE (set_id, filename)
);

CREATE INDEX boot_resource_files_sha256 ON boot_resource_files (sha256);

CREATE TABLE import_runs (
    id       INTEGER PRIMARY KEY,
    started  TEXT NOT NULL,
    finished TEXT,
    outcome  TEXT,
    summary  TEXT NOT NULL DEFAULT '{}'
);
