-- PostgreSQL twin of ../0006_rack_host.sql.

ALTER TABLE racks ADD COLUMN architecture TEXT;
ALTER TABLE racks ADD COLUMN cpu_count BIGINT;
ALTER TABLE racks ADD COLUMN cpu_speed BIGINT;
ALTER TABLE racks ADD COLUMN memory BIGINT;
ALTER TABLE racks ADD COLUMN osystem TEXT;
ALTER TABLE racks ADD COLUMN distro_series TEXT;
ALTER TABLE racks ADD COLUMN version TEXT;
ALTER TABLE racks ADD COLUMN interfaces TEXT;
