-- Each rack's own credential, issued at its first registration (region/db/racks.py).
-- Only its SHA-256 (hex) is kept; the rack keeps the token in its rack.json (0600)
-- and sends it on every call, so the shared rack secret alone no longer lets one
-- rack re-register, report or listen as another. NULL: the rack registered before
-- credentials existed; it gets one at its next registration.

ALTER TABLE racks ADD COLUMN credential_hash TEXT CHECK (length(credential_hash) = 64);
