-- PostgreSQL twin of ../0001_core.sql. Ids are identity columns: a sequence hands
-- them out and never gives one twice (what SQLite needs AUTOINCREMENT for, 0007).
-- Integers are BIGINT (file sizes exceed 2 GiB); 0/1 flags stay integers so the
-- repositories' SQL is the same on both engines. Timestamps are ISO 8601 UTC text.

CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL DEFAULT '',
    is_admin BIGINT NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    consumer_key TEXT NOT NULL UNIQUE,
    token_key TEXT NOT NULL UNIQUE,
    token_secret TEXT NOT NULL,
    created TEXT NOT NULL
);

CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

CREATE TABLE boot_sources (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    keyring_filename TEXT NOT NULL DEFAULT '',
    keyring_data BYTEA NOT NULL DEFAULT '\x'::bytea,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);

CREATE TABLE boot_source_selections (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    boot_source_id BIGINT NOT NULL REFERENCES boot_sources (id) ON DELETE CASCADE,
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
