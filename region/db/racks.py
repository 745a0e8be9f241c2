"""The rack registry (``racks`` table): what each rack said about itself and its last report.

It survives region restarts; the live side (event streams, the shared secret) is
:mod:`region.rackhub.hub`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
from dataclasses import dataclass
from typing import Literal

from common.rackproto import (
    HostFacts,
    RackImage,
    RackState,
    RackStatus,
    Registration,
    host_from_json,
    to_json,
)
from region.db.connection import Connection, Database, Row
from region.db.timestamps import now_iso, utc_text

SYSTEM_ID_ALPHABET = string.ascii_lowercase + string.digits
SYSTEM_ID_LENGTH = 6
CREDENTIAL_BYTES = 32
HOST_COLUMNS = (
    "architecture",
    "cpu_count",
    "cpu_speed",
    "memory",
    "osystem",
    "distro_series",
    "version",
    "interfaces",
)
_COLUMNS = (
    "system_id, hostname, url, registered, last_seen, state, snapshot_id, images, "
    "last_sync, error, updated, " + ", ".join(HOST_COLUMNS)
)


@dataclass(frozen=True)
class RackRow:
    """One registered rack and its last report (``state`` None: it never reported)."""

    system_id: str
    hostname: str
    url: str
    registered: str
    last_seen: str
    state: RackState | None
    snapshot_id: str | None
    images: tuple[RackImage, ...]
    last_sync: str | None
    error: str | None
    updated: str | None
    host: HostFacts | None = None  # what it said of its host at its last registration


def new_system_id() -> str:
    """A random MAAS-style id: six lowercase letters and digits."""
    return "".join(secrets.choice(SYSTEM_ID_ALPHABET) for _ in range(SYSTEM_ID_LENGTH))


async def register_rack(
    db: Database, reg: Registration, *, credential: str | None = None
) -> tuple[RackRow, bool]:
    """Record a (re-)registration; the rack and whether it is new.

    A known ``system_id`` keeps its row (hostname and URL are updated) if
    ``credential`` is the rack's own, or the rack holds none yet; otherwise
    RackCredentialError, and nothing changes. None, or an id this region does not
    know, gets a newly allocated id. :func:`issue_credential` gives a rack its own.
    """
    now = now_iso()
    async with db.write() as conn:
        if reg.system_id is not None:
            await _check_credential(conn, reg.system_id, credential)
            cur = await conn.execute(
                "UPDATE racks SET hostname = ?, url = ?, last_seen = ? WHERE system_id = ?",
                (reg.hostname, reg.url, now, reg.system_id),
            )
            if cur.rowcount:
                system_id, new = reg.system_id, False
            else:
                system_id, new = await _insert(conn, reg, now), True
        else:
            system_id, new = await _insert(conn, reg, now), True
        if reg.host is not None:
            await _store_host(conn, system_id, reg.host)
        rack = await _get_rack(conn, system_id)
    assert rack is not None
    return rack, new


async def _insert(conn: Connection, reg: Registration, now: str) -> str:
    while True:
        system_id = new_system_id()
        # 36^6 ids: a clash is rare, and another draw settles it. DO NOTHING rather
        # than catching the error: on PostgreSQL an error ends the transaction.
        cur = await conn.execute(
            "INSERT INTO racks (system_id, hostname, url, registered, last_seen) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (system_id) DO NOTHING",
            (system_id, reg.hostname, reg.url, now, now),
        )
        if cur.rowcount == 1:
            return system_id


async def get_rack(db: Database, system_id: str) -> RackRow | None:
    """The rack ``system_id``, or None."""
    async with db.read() as conn:
        return await _get_rack(conn, system_id)


async def _get_rack(conn: Connection, system_id: str) -> RackRow | None:
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM racks WHERE system_id = ?",  # noqa: S608
        (system_id,),
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else _rack(row)


async def list_racks(db: Database) -> list[RackRow]:
    """Every registered rack, by hostname then id."""
    sql = f"SELECT {_COLUMNS} FROM racks ORDER BY hostname, system_id"  # noqa: S608
    async with db.read() as conn, conn.execute(sql) as cur:
        rows = await cur.fetchall()
    return [_rack(row) for row in rows]


async def store_status(db: Database, system_id: str, status: RackStatus) -> bool:
    """Record a rack's report; False when the rack is unknown.

    ``status.last_sync`` must be ISO 8601 (ValueError otherwise); a report
    without one keeps the last known time.
    """
    try:
        last_sync = utc_text(status.last_sync) if status.last_sync is not None else None
    except ValueError:
        raise ValueError(f"last_sync: not an ISO 8601 time: {status.last_sync!r}") from None
    images = json.dumps(
        [
            {"name": i.name, "architecture": i.architecture, "subarches": list(i.subarches)}
            for i in status.images
        ]
    )
    now = now_iso()
    async with db.write() as conn:
        cur = await conn.execute(
            "UPDATE racks SET state = ?, snapshot_id = ?, images = ?, "
            "last_sync = COALESCE(?, last_sync), error = ?, updated = ?, last_seen = ? "
            "WHERE system_id = ?",
            (
                status.state,
                status.snapshot_id,
                images,
                last_sync,
                status.error,
                now,
                now,
                system_id,
            ),
        )
    return bool(cur.rowcount)


async def touch_rack(db: Database, system_id: str) -> None:
    """Note that the rack was just heard from."""
    async with db.write() as conn:
        await conn.execute(
            "UPDATE racks SET last_seen = ? WHERE system_id = ?", (now_iso(), system_id)
        )


def _rack(row: Row) -> RackRow:
    images = tuple(
        RackImage(
            name=i["name"], architecture=i["architecture"], subarches=list(i.get("subarches", []))
        )
        for i in json.loads(str(row["images"]))
    )
    return RackRow(
        system_id=row["system_id"],
        hostname=row["hostname"],
        url=row["url"],
        registered=row["registered"],
        last_seen=row["last_seen"],
        state=row["state"],
        snapshot_id=row["snapshot_id"],
        images=images,
        last_sync=row["last_sync"],
        error=row["error"],
        updated=row["updated"],
        host=_host(row),
    )


async def _store_host(conn: Connection, system_id: str, host: HostFacts) -> None:
    facts = to_json(host)
    facts["interfaces"] = json.dumps(facts["interfaces"])
    assignments = ", ".join(f"{column} = ?" for column in HOST_COLUMNS)
    await conn.execute(
        f"UPDATE racks SET {assignments} WHERE system_id = ?",  # noqa: S608
        (*(facts[column] for column in HOST_COLUMNS), system_id),
    )


def _host(row: Row) -> HostFacts | None:
    """The stored host facts; None when the rack never sent any."""
    if row["architecture"] is None:
        return None
    facts = {column: row[column] for column in HOST_COLUMNS}
    facts["interfaces"] = json.loads(facts["interfaces"] or "[]")
    return host_from_json(facts)


# --- each rack's own credential ----------------------------------------------------------


class RackCredentialError(Exception):
    """A call for a rack that holds its own credential came without it (``missing``) or
    with another (``wrong``)."""

    def __init__(self, system_id: str, reason: Literal["missing", "wrong"]) -> None:
        self.system_id = system_id
        self.reason = reason
        carried = "no rack credential" if reason == "missing" else "a wrong rack credential"
        super().__init__(f"rack {system_id} holds its own credential; this call carried {carried}")


def new_credential() -> str:
    """A random rack credential (URL-safe text, 256 bits)."""
    return secrets.token_urlsafe(CREDENTIAL_BYTES)


def credential_hash(credential: str) -> str:
    """What the region stores of a credential: its SHA-256, hex."""
    return hashlib.sha256(credential.encode()).hexdigest()


async def issue_credential(db: Database, system_id: str) -> str | None:
    """A new credential for rack ``system_id`` if it holds none yet (only its hash is
    stored); None when it holds one already, or the rack is unknown."""
    credential = new_credential()
    async with db.write() as conn:
        cur = await conn.execute(
            "UPDATE racks SET credential_hash = ? WHERE system_id = ? AND credential_hash IS NULL",
            (credential_hash(credential), system_id),
        )
    return credential if cur.rowcount else None


async def check_credential(db: Database, system_id: str, credential: str | None) -> bool:
    """Whether rack ``system_id`` is known; RackCredentialError if it holds its own
    credential and ``credential`` is not it (a rack that holds none yet passes)."""
    async with db.read() as conn:
        return await _check_credential(conn, system_id, credential)


async def _check_credential(conn: Connection, system_id: str, credential: str | None) -> bool:
    async with conn.execute(
        "SELECT credential_hash FROM racks WHERE system_id = ?", (system_id,)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return False
    stored = row["credential_hash"]
    if stored is None:
        return True
    if credential is None:
        raise RackCredentialError(system_id, "missing")
    if not hmac.compare_digest(credential_hash(credential), str(stored)):
        raise RackCredentialError(system_id, "wrong")
    return True
