-- Web UI logins: a password hash per user (scrypt, per-user salt) and server-side
-- sessions keyed by the sha256 of a random token (the cookie holds the token).

CREATE TABLE user_passwords (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    hash TEXT NOT NULL,  -- scrypt$n$r$p$<salt hex>$<key hex>
    updated TEXT NOT NULL
);

CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT NOT NULL
);

CREATE INDEX web_sessions_user_id ON web_sessions (user_id);
