-- Ids are never given twice. With a plain INTEGER PRIMARY KEY SQLite hands out
-- max(id) + 1, so deleting the newest row gave its id to the next one, and a
-- script holding the old id read or deleted another object. AUTOINCREMENT
-- counts on from the largest id the table ever held (sqlite_sequence).
--
-- Each table keyed by `id` is rebuilt the way SQLite documents: a new table,
-- the rows copied with their ids, the old one dropped, the new one renamed.
-- The migration runner switches foreign keys off while this runs (so dropping a
-- parent cascades nothing) and checks them before it commits; children refer to
-- their parent by name, so they follow the renamed table. Indexes are made again.

CREATE TABLE users_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL DEFAULT '',
    is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created TEXT NOT NULL
);
INSERT INTO users_new (id, username, email, is_admin, created)
    SELECT id, username, email, is_admin, created FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;

CREATE TABLE api_tokens_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    consumer_key TEXT NOT NULL UNIQUE,
    token_key TEXT NOT NULL UNIQUE,
    token_secret TEXT NOT NULL,
    created TEXT NOT NULL
);
INSERT INTO api_tokens_new (id, user_id, consumer_key, token_key, token_secret, created)
    SELECT id, user_id, consumer_key, token_key, token_secret, created FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

CREATE TABLE boot_sources_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL UNIQUE,
    keyring_filename TEXT NOT NULL DEFAULT '',
    keyring_data BLOB NOT NULL DEFAULT x'',
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
INSERT INTO boot_sources_new (id, url, keyring_filename, keyring_data, created, updated)
    SELECT id, url, keyring_filename, keyring_data, created, updated FROM boot_sources;
DROP TABLE boot_sources;
ALTER TABLE boot_sources_new RENAME TO boot_sources;

CREATE TABLE boot_source_selections_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    boot_source_id INTEGER NOT NULL REFERENCES boot_sources (id) ON DELETE CASCADE,
    os TEXT NOT NULL,
    release TEXT NOT NULL,
    arches TEXT NOT NULL DEFAULT '[]',     -- JSON list of strings; "*" matches all
    subarches TEXT NOT NULL DEFAULT '[]',  -- JSON list of strings
    labels TEXT NOT NULL DEFAULT '[]',     -- JSON list of strings
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    UNIQUE (boot_source_id, os, release)
);
INSERT INTO boot_source_selections_new
    (id, boot_source_id, os, release, arches, subarches, labels, created, updated)
    SELECT id, boot_source_id, os, release, arches, subarches, labels, created, updated
    FROM boot_source_selections;
DROP TABLE boot_source_selections;
ALTER TABLE boot_source_selections_new RENAME TO boot_source_selections;

CREATE TABLE boot_source_cache_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO boot_source_cache_new
    (id, boot_source_id, os, arch, subarch, release, label, kflavor, bootloader_type,
     release_codename, release_title, support_eol, extra, created, updated)
    SELECT id, boot_source_id, os, arch, subarch, release, label, kflavor, bootloader_type,
           release_codename, release_title, support_eol, extra, created, updated
    FROM boot_source_cache;
DROP TABLE boot_source_cache;
ALTER TABLE boot_source_cache_new RENAME TO boot_source_cache;

-- rtype: 0 synced, 1 generated (legacy, unused), 2 uploaded.
CREATE TABLE boot_resources_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO boot_resources_new
    (id, rtype, name, architecture, kflavor, bootloader_type, rolling, base_image, extra,
     created, updated)
    SELECT id, rtype, name, architecture, kflavor, bootloader_type, rolling, base_image, extra,
           created, updated
    FROM boot_resources;
DROP TABLE boot_resources;
ALTER TABLE boot_resources_new RENAME TO boot_resources;

CREATE TABLE boot_resource_sets_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_id INTEGER NOT NULL REFERENCES boot_resources(id) ON DELETE CASCADE,
    version     TEXT NOT NULL,
    label       TEXT NOT NULL,
    created     TEXT NOT NULL,
    UNIQUE (resource_id, version)
);
INSERT INTO boot_resource_sets_new (id, resource_id, version, label, created)
    SELECT id, resource_id, version, label, created FROM boot_resource_sets;
DROP TABLE boot_resource_sets;
ALTER TABLE boot_resource_sets_new RENAME TO boot_resource_sets;

-- bytes_done == size means the blob is in the store; progress = bytes_done / size.
CREATE TABLE boot_resource_files_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    set_id     INTEGER NOT NULL REFERENCES boot_resource_sets(id) ON DELETE CASCADE,
    filename   TEXT NOT NULL,
    filetype   TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    extra      TEXT NOT NULL DEFAULT '{}',
    UNIQUE (set_id, filename)
);
INSERT INTO boot_resource_files_new (id, set_id, filename, filetype, sha256, size, bytes_done, extra)
    SELECT id, set_id, filename, filetype, sha256, size, bytes_done, extra FROM boot_resource_files;
DROP TABLE boot_resource_files;
ALTER TABLE boot_resource_files_new RENAME TO boot_resource_files;
CREATE INDEX boot_resource_files_sha256 ON boot_resource_files (sha256);

CREATE TABLE import_runs_new (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    started  TEXT NOT NULL,
    finished TEXT,
    outcome  TEXT,
    summary  TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO import_runs_new (id, started, finished, outcome, summary)
    SELECT id, started, finished, outcome, summary FROM import_runs;
DROP TABLE import_runs;
ALTER TABLE import_runs_new RENAME TO import_runs;
