-- PostgreSQL twin of ../0004_passwords.sql.

CREATE TABLE user_passwords (
    user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    hash TEXT NOT NULL,
    updated TEXT NOT NULL
);

CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT NOT NULL
);

CREATE INDEX web_sessions_user_id ON web_sessions (user_id);
