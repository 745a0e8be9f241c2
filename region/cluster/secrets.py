"""The secrets every region of a cluster shares, kept in the table ``cluster_secrets``.

- ``signing_key``: the stream signing key (ASCII-armored secret key), so every region
  signs with one key and a rack's pinned keyring is valid whichever region it reaches;
- ``rack_secret``: what racks authenticate with (``bootsync rack-secret`` prints it);
- ``peer_token``: what regions fetch blobs from each other with.

At start a region offers its own (insert-if-absent: the first region to start, or an
existing single region, gives the cluster its key and rack secret), reads back the
stored ones and adopts them: the signing key replaces the one in its gpg home (the
replaced key is kept there as ``replaced-<fingerprint>.asc``), the rack secret is
written to ``<data_dir>/rack-secret``. SQLite (one region) goes the same way and
simply adopts its own. The values are stored in clear: the database's access control
protects them, as it protects the API tokens.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.ops.logging import get_logger
from common.trust.keyrings import SigningKey
from region.db.connection import Database
from region.db.timestamps import now_iso
from region.rackhub.secret import aload_or_create_secret, replace_secret, secret_path

__all__ = [
    "PEER_TOKEN",
    "RACK_SECRET",
    "SIGNING_KEY",
    "ClusterSecrets",
    "adopt_cluster_secrets",
    "offer_secrets",
    "read_secret",
]

log = get_logger("cluster")

SIGNING_KEY = "signing_key"
RACK_SECRET = "rack_secret"  # noqa: S105 - a row name, not a secret
PEER_TOKEN = "peer_token"  # noqa: S105 - a row name, not a secret
NAMES = (SIGNING_KEY, RACK_SECRET, PEER_TOKEN)


@dataclass(frozen=True)
class ClusterSecrets:
    """What this region adopted: the cluster's signing key, rack secret and peer token."""

    key: SigningKey
    rack_secret: str
    peer_token: str

    def __repr__(self) -> str:  # the secrets stay out of logs and tracebacks
        return f"ClusterSecrets(fingerprint={self.key.fingerprint!r})"


async def offer_secrets(db: Database, own: Mapping[str, str]) -> dict[str, str]:
    """Store each of ``own`` the cluster lacks (logged ``cluster_secret_created``); all stored.

    One transaction: regions starting together agree on the first one's values.
    """
    async with db.write() as conn:
        for name, value in own.items():
            cur = await conn.execute(
                "INSERT INTO cluster_secrets (name, value, created) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, value, now_iso()),
            )
            if cur.rowcount == 1:
                log.info("cluster_secret_created", name=name)
        cur = await conn.execute("SELECT name, value FROM cluster_secrets")
        return {str(row["name"]): str(row["value"]) for row in await cur.fetchall()}


async def read_secret(db: Database, name: str) -> str | None:
    """The cluster's secret ``name`` (``peer_token``, ...), or None before any region stored it."""
    async with db.read() as conn:
        cur = await conn.execute("SELECT value FROM cluster_secrets WHERE name = ?", (name,))
        row = await cur.fetchone()
    return str(row["value"]) if row is not None else None


async def adopt_cluster_secrets(db: Database, data_dir: Path, key: SigningKey) -> ClusterSecrets:
    """Offer this region's secrets, then adopt the cluster's (see the module's docstring).

    ``key`` is this region's signing key (open, in its gpg home); the key returned
    signs with the cluster's. Call it before the key signs or the rack hub opens.
    KeyringError if the stored key is unusable, ValueError for a stored rack secret
    that is none, sqlite3.Error when the database fails.
    """
    own = {
        SIGNING_KEY: (await asyncio.to_thread(key.export_secret)).decode("ascii"),
        RACK_SECRET: await aload_or_create_secret(data_dir),
        PEER_TOKEN: secrets.token_urlsafe(32),
    }
    stored = await offer_secrets(db, own)
    adopted = await asyncio.to_thread(key.adopt, stored[SIGNING_KEY].encode("ascii"))
    if adopted.fingerprint != key.fingerprint:
        log.info(
            "cluster_key_adopted",
            fingerprint=adopted.fingerprint,
            replaced=key.fingerprint,
            home=str(adopted.home),
        )
    rack_secret = stored[RACK_SECRET]
    if await asyncio.to_thread(replace_secret, data_dir, rack_secret):
        log.info("rack_secret_adopted", path=str(secret_path(data_dir)))
    return ClusterSecrets(key=adopted, rack_secret=rack_secret, peer_token=stored[PEER_TOKEN])
