-- PostgreSQL twin of ../0005_rack_credentials.sql.

ALTER TABLE racks ADD COLUMN credential_hash TEXT CHECK (length(credential_hash) = 64);
