-- Users and their OAuth API keys, boot sources and their selections, config.
-- Timestamps are ISO 8601 UTC text without a zone (region.api.http.now_iso).

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL DEFAULT '',
    is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    consumer_key TEXT NOT NULL UNIQUE,
    token_key TEXT NOT NULL UNIQUE,
    token_secret TEXT NOT NULL,
    created TEXT NOT NULL
);

CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

CREATE TABLE boot_sources (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    keyring_filename TEXT NOT NULL DEFAULT '',
    keyring_data BLOB NOT NULL DEFAULT x'',
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);

CREATE TABLE boot_source_selections (
    id INTEGER PRIMARY KEY,
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

CREATE TABLE config (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL  -- JSON
);
