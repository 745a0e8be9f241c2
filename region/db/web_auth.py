"""Web UI logins: password hashes and server-side sessions (tables of migration 0004).

Passwords are hashed with scrypt (memory-hard; stdlib ``hashlib.scrypt``) and a
random per-user salt, stored as ``scrypt$n$r$p$<salt hex>$<key hex>``. Hashing
runs in a worker thread: it takes tens of milliseconds and 16 MiB on purpose.

A session row is keyed by the sha256 of a random token; the browser holds the
token (the cookie), so a copy of the database opens no session. Each session
has its own CSRF token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from region.db.connection import Database, Row
from region.db.timestamps import now_iso
from region.db.users import User

SCRYPT_N = 1 << 14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MIN_PASSWORD_LENGTH = 8
SESSION_TTL = timedelta(days=14)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$key`` for ``password`` with a fresh random salt (blocking)."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=64 << 20
    )
    return f"scrypt${n}${r}${p}${salt.hex()}${key.hex()}"


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` hashes to ``stored`` (constant-time compare; blocking)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(key)
        got = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 << 20,
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


async def set_password(db: Database, user_id: int, password: str) -> None:
    """Store a new hash of ``password`` for ``user_id`` (and end the user's sessions)."""
    hashed = await asyncio.to_thread(hash_password, password)
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO user_passwords (user_id, hash, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, updated = excluded.updated",
            (user_id, hashed, now_iso()),
        )
        await conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        is_admin=bool(row["is_admin"]),
        created=row["created"],
    )


# A fixed hash checked when the user does not exist, so timing does not tell who does.
_DUMMY = hash_password("not a password", n=SCRYPT_N)


async def authenticate(db: Database, username: str, password: str) -> User | None:
    """The user when ``password`` is theirs; None otherwise (same cost either way)."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT users.*, user_passwords.hash AS hash FROM users "
            "LEFT JOIN user_passwords ON user_passwords.user_id = users.id "
            "WHERE users.username = ?",
            (username,),
        ) as cur,
    ):
        row = await cur.fetchone()
    stored = row["hash"] if row is not None and row["hash"] else _DUMMY
    ok = await asyncio.to_thread(check_password, password, stored)
    return _user(row) if ok and row is not None and row["hash"] else None


@dataclass(frozen=True)
class WebSession:
    """A logged-in browser: its user and the CSRF token its forms must send back."""

    user: User
    csrf_token: str
    expires: str


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_session(db: Database, user_id: int) -> tuple[str, str]:
    """A new session for ``user_id``: (cookie token, CSRF token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = datetime.now(UTC).replace(tzinfo=None)
    async with db.write() as conn:
        await conn.execute("DELETE FROM web_sessions WHERE expires < ?", (now.isoformat(),))
        await conn.execute(
            "INSERT INTO web_sessions (token_hash, user_id, csrf_token, created, expires) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                _token_hash(token),
                user_id,
                csrf,
                now.isoformat(timespec="microseconds"),
                (now + SESSION_TTL).isoformat(timespec="microseconds"),
            ),
        )
    return token, csrf


async def get_session(db: Database, token: str) -> WebSession | None:
    """The live session of cookie ``token``, or None (unknown or expired)."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT users.*, web_sessions.csrf_token AS csrf, web_sessions.expires AS expires "
            "FROM web_sessions JOIN users ON users.id = web_sessions.user_id "
            "WHERE web_sessions.token_hash = ? AND web_sessions.expires > ?",
            (_token_hash(token), now_iso()),
        ) as cur,
    ):
        row = await cur.fetchone()
    if row is None:
        return None
    return WebSession(user=_user(row), csrf_token=row["csrf"], expires=row["expires"])


async def delete_session(db: Database, token: str) -> None:
    """End the session of cookie ``token`` (log out)."""
    async with db.write() as conn:
        await conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (_token_hash(token),))
