-- MAAS 3.8's boot-source fields (region/db/sources.py, region/api/boot_sources.py):
-- name (unique; defaults to the URL), priority (unique, >= 0; the higher wins an
-- image two sources offer; a new source gets one above the highest), enabled (a
-- disabled source is not read), skip_keyring_verification (read the unsigned
-- index.json without a keyring; MAAS's default: true for a .json URL).
--
-- Existing sources, as MAAS's own migration backfills them: named by their URL,
-- prioritised by creation (newer higher, spaced by 10), enabled, and skipping
-- verification exactly when their URL names a .json index (read unsigned before).

ALTER TABLE boot_sources ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE boot_sources ADD COLUMN priority INTEGER NOT NULL DEFAULT 0 CHECK (priority >= 0);
ALTER TABLE boot_sources ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1));
ALTER TABLE boot_sources ADD COLUMN skip_keyring_verification INTEGER NOT NULL DEFAULT 0
    CHECK (skip_keyring_verification IN (0, 1));

UPDATE boot_sources SET
    name = url,
    priority = 10 * (
        SELECT COUNT(*) FROM boot_sources AS older
        WHERE (older.created, older.id) <= (boot_sources.created, boot_sources.id)
    ),
    skip_keyring_verification = (url LIKE '%.json');

CREATE UNIQUE INDEX boot_sources_name ON boot_sources (name);
CREATE UNIQUE INDEX boot_sources_priority ON boot_sources (priority);
