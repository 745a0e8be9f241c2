-- Rack controllers registered with this region and what each last reported.
-- Timestamps are ISO 8601 UTC text without a zone (region.api.http.now_iso).
-- Whether a rack is connected (holds its event stream open) is not stored:
-- it is known only to the running region (region/rackhub/hub.py, RackHub).

CREATE TABLE racks (
    system_id   TEXT PRIMARY KEY CHECK (length(system_id) = 6),  -- MAAS-style: 6 of [a-z0-9]
    hostname    TEXT NOT NULL,
    url         TEXT NOT NULL,             -- where the rack serves /images/
    registered  TEXT NOT NULL,             -- first registration
    last_seen   TEXT NOT NULL,             -- last registration, status report or event stream
    state       TEXT CHECK (state IN ('idle', 'syncing', 'synced', 'failed')),  -- NULL: never reported
    snapshot_id TEXT,                      -- the region snapshot the rack serves
    images      TEXT NOT NULL DEFAULT '[]',  -- JSON list of {name, architecture, subarches}
    last_sync   TEXT,                      -- end of the rack's last successful sync
    error       TEXT,                      -- why the rack's last attempt failed
    updated     TEXT                       -- when the rack last reported its status
);
