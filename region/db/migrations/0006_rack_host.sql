-- What each rack reports about its host at registration, shown in its
-- rack-controller object as MAAS shows it. NULL: the rack never said (a rack
-- older than host facts); a registration without facts keeps the last ones.

ALTER TABLE racks ADD COLUMN architecture TEXT;   -- Debian naming: amd64, arm64, ...
ALTER TABLE racks ADD COLUMN cpu_count INTEGER;
ALTER TABLE racks ADD COLUMN cpu_speed INTEGER;   -- MHz
ALTER TABLE racks ADD COLUMN memory INTEGER;      -- MiB
ALTER TABLE racks ADD COLUMN osystem TEXT;        -- /etc/os-release ID
ALTER TABLE racks ADD COLUMN distro_series TEXT;  -- /etc/os-release VERSION_CODENAME
ALTER TABLE racks ADD COLUMN version TEXT;        -- the rack's bootsync version
ALTER TABLE racks ADD COLUMN interfaces TEXT;     -- JSON list of {name, mac_address, mtu, enabled, type, addresses}
