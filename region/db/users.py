"""Users and their OAuth API keys in the region database.

An API key is MAAS's ``consumer_key:token_key:token_secret``: 18, 18 and 32
random letters and digits. The secret is stored as given (PLAINTEXT OAuth sends
it on every request, so a hash would protect nothing the wire does not expose)
and compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import sqlite3
import string
from dataclasses import dataclass

from region.db.connection import Database, Row
from region.db.sources import DuplicateError
from region.db.timestamps import now_iso

_ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = 18
SECRET_LENGTH = 32


@dataclass(frozen=True)
class User:
    """A region user; admins may change sources, selections, resources and config."""

    id: int
    username: str
    email: str
    is_admin: bool
    created: str


@dataclass(frozen=True)
class ApiKey:
    """The three parts of an API key; ``str()`` gives ``ck:tk:ts`` as clients take it."""

    consumer_key: str
    token_key: str
    token_secret: str

    def __str__(self) -> str:
        return f"{self.consumer_key}:{self.token_key}:{self.token_secret}"


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        is_admin=bool(row["is_admin"]),
        created=row["created"],
    )


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


async def create_user(
    db: Database, username: str, *, email: str = "", is_admin: bool = False
) -> User:
    """Insert a user; DuplicateError if ``username`` is taken."""
    now = now_iso()
    try:
        async with db.write() as conn:
            cursor = await conn.execute(
                "INSERT INTO users (username, email, is_admin, created) VALUES (?, ?, ?, ?)"
                " RETURNING id",
                (username, email, int(is_admin), now),
            )
    except sqlite3.IntegrityError as exc:
        raise DuplicateError(f"user {username} exists") from exc
    assert cursor.lastrowid is not None  # an INSERT always sets it
    return User(id=cursor.lastrowid, username=username, email=email, is_admin=is_admin, created=now)


async def get_user(db: Database, username: str) -> User | None:
    """The user called ``username``, or None."""
    async with (
        db.read() as conn,
        conn.execute("SELECT * FROM users WHERE username = ?", (username,)) as cur,
    ):
        row = await cur.fetchone()
    return _user(row) if row else None


async def update_user(
    db: Database,
    user_id: int,
    *,
    is_admin: bool | None = None,
    email: str | None = None,
) -> None:
    """Set the admin flag and/or the email of a user (None keeps a field)."""
    async with db.write() as conn:
        if is_admin is not None:
            await conn.execute(
                "UPDATE users SET is_admin = ? WHERE id = ?", (int(is_admin), user_id)
            )
        if email is not None:
            await conn.execute("UPDATE users SET email = ? WHERE id = ?", (email, user_id))


async def set_admin(db: Database, user_id: int, is_admin: bool = True) -> None:
    """Make ``user_id`` an admin (or not)."""
    await update_user(db, user_id, is_admin=is_admin)


async def create_token(db: Database, user_id: int) -> tuple[str, str, str]:
    """Make a new API key for ``user_id``: (consumer_key, token_key, token_secret)."""
    key = ApiKey(_random(KEY_LENGTH), _random(KEY_LENGTH), _random(SECRET_LENGTH))
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO api_tokens (user_id, consumer_key, token_key, token_secret, created)"
            " VALUES (?, ?, ?, ?, ?)",
            (user_id, key.consumer_key, key.token_key, key.token_secret, now_iso()),
        )
    return key.consumer_key, key.token_key, key.token_secret


async def first_token(db: Database, user_id: int) -> tuple[str, str, str] | None:
    """The earliest API key of ``user_id`` (consumer_key, token_key, token_secret), or None."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT consumer_key, token_key, token_secret FROM api_tokens WHERE user_id = ?"
            " ORDER BY id LIMIT 1",
            (user_id,),
        ) as cur,
    ):
        row = await cur.fetchone()
    return None if row is None else (row[0], row[1], row[2])


async def user_for_token(
    db: Database, consumer_key: str, token_key: str, token_secret: str
) -> User | None:
    """The user owning this key, or None when any of the three parts is wrong."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT users.*, api_tokens.token_secret AS secret FROM api_tokens"
            " JOIN users ON users.id = api_tokens.user_id"
            " WHERE api_tokens.consumer_key = ? AND api_tokens.token_key = ?",
            (consumer_key, token_key),
        ) as cur,
    ):
        row = await cur.fetchone()
    if row is None:
        return None
    if not hmac.compare_digest(row["secret"].encode(), token_secret.encode()):
        return None
    return _user(row)
