-- PostgreSQL twin of ../0009_boot_source_options.sql (MAAS 3.8's boot-source fields).

ALTER TABLE boot_sources ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE boot_sources ADD COLUMN priority BIGINT NOT NULL DEFAULT 0 CHECK (priority >= 0);
ALTER TABLE boot_sources ADD COLUMN enabled BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1));
ALTER TABLE boot_sources ADD COLUMN skip_keyring_verification BIGINT NOT NULL DEFAULT 0
    CHECK (skip_keyring_verification IN (0, 1));

UPDATE boot_sources SET
    name = url,
    priority = 10 * (
        SELECT COUNT(*) FROM boot_sources AS older
        WHERE (older.created, older.id) <= (boot_sources.created, boot_sources.id)
    ),
    skip_keyring_verification = CASE WHEN url LIKE '%.json' THEN 1 ELSE 0 END;

CREATE UNIQUE INDEX boot_sources_name ON boot_sources (name);
CREATE UNIQUE INDEX boot_sources_priority ON boot_sources (priority);
