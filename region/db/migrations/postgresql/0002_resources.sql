-- PostgreSQL twin of ../0002_resources.sql (catalogue, status, resources, imports).

CREATE TABLE boot_source_cache (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    boot_source_id   BIGINT NOT NULL REFERENCES boot_sources(id) ON DELETE CASCADE,
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

CREATE TABLE boot_source_status (
    boot_source_id     BIGINT PRIMARY KEY REFERENCES boot_sources(id) ON DELETE CASCADE,
    last_error         TEXT,
    last_error_at      TEXT,
    warnings           TEXT NOT NULL DEFAULT '[]',
    last_index_updated TEXT,
    index_changed_at   TEXT,
    last_checked_at    TEXT
);

CREATE TABLE imported_index (
    url           TEXT PRIMARY KEY,
    index_updated TEXT NOT NULL,
    imported_at   TEXT NOT NULL
);

-- rtype: 0 synced, 1 generated (legacy, unused), 2 uploaded.
CREATE TABLE boot_resources (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rtype           BIGINT NOT NULL,
    name            TEXT NOT NULL,
    architecture    TEXT NOT NULL,
    kflavor         TEXT,
    bootloader_type TEXT,
    rolling         BIGINT NOT NULL DEFAULT 0,
    base_image      TEXT NOT NULL DEFAULT '',
    extra           TEXT NOT NULL DEFAULT '{}',
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL,
    UNIQUE (name, architecture)
);

CREATE TABLE boot_resource_sets (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_id BIGINT NOT NULL REFERENCES boot_resources(id) ON DELETE CASCADE,
    version     TEXT NOT NULL,
    label       TEXT NOT NULL,
    created     TEXT NOT NULL,
    UNIQUE (resource_id, version)
);

CREATE TABLE boot_resource_files (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    set_id     BIGINT NOT NULL REFERENCES boot_resource_sets(id) ON DELETE CASCADE,
    filename   TEXT NOT NULL,
    filetype   TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    bytes_done BIGINT NOT NULL DEFAULT 0,
    extra      TEXT NOT NULL DEFAULT '{}',
    UNIQUE (set_id, filename)
);

CREATE INDEX boot_resource_files_sha256 ON boot_resource_files (sha256);

CREATE TABLE import_runs (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started  TEXT NOT NULL,
    finished TEXT,
    outcome  TEXT,
    summary  TEXT NOT NULL DEFAULT '{}'
);
