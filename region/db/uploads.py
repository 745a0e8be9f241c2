"""Uploaded boot resources in the region database: new sets, chunk progress, completion.

An upload is a resource of rtype 2 with one new set per upload (label
``uploaded``, version ``YYYYmmdd``, then ``YYYYmmdd.1``, ...) holding one file
named after its filetype. ``bytes_done`` is the length of the file's partial
that the last complete chunk reached (region/images/upload_area.py). Reads see the
last committed state; writes are one transaction each (``repo_resources.atomic``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from region.db.connection import Connection, Database
from region.db.resources import UPLOADED, atomic
from region.db.timestamps import now_iso

UPLOADED_LABEL = "uploaded"
_KEEP_OLD = "keep_old"  # resource extra: the last upload asked to keep older sets


class ResourceClashError(Exception):
    """A resource that is not an upload already has this name and architecture."""


@dataclass(frozen=True)
class NewUpload:
    """A validated upload request (region/api/upload_rules.py)."""

    name: str
    architecture: str
    title: str
    filetype: str
    base_image: str
    keep_old: bool


@dataclass(frozen=True)
class UploadFile:
    """A boot-resource file as the upload handler needs it."""

    id: int
    resource_id: int
    rtype: int
    sha256: str
    size: int
    bytes_done: int

    @property
    def complete(self) -> bool:
        """True once the blob is stored."""
        return self.bytes_done >= self.size


async def get_file(db: Database, resource_id: int, file_id: int) -> UploadFile | None:
    """File ``file_id`` of resource ``resource_id``; None if there is no such pair."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT f.id, s.resource_id, r.rtype, f.sha256, f.size, f.bytes_done "
            "FROM boot_resource_files f JOIN boot_resource_sets s ON s.id = f.set_id "
            "JOIN boot_resources r ON r.id = s.resource_id WHERE f.id = ? AND r.id = ?",
            (file_id, resource_id),
        ) as cur,
    ):
        row = await cur.fetchone()
    return None if row is None else UploadFile(*row)


async def incomplete_files(db: Database, resource_id: int) -> dict[int, dict[str, int]]:
    """set id → filename → file id, for the incomplete files of ``resource_id``."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT f.set_id, f.filename, f.id FROM boot_resource_files f JOIN "
            "boot_resource_sets s ON s.id = f.set_id WHERE s.resource_id = ? AND "
            "f.bytes_done < f.size",
            (resource_id,),
        ) as cur,
    ):
        rows = await cur.fetchall()
    found: dict[int, dict[str, int]] = {}
    for set_id, filename, file_id in rows:
        found.setdefault(set_id, {})[filename] = file_id
    return found


async def sizes_of(db: Database, sha256: str) -> set[int]:
    """The sizes files with ``sha256`` are recorded with."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT DISTINCT size FROM boot_resource_files WHERE sha256 = ?", (sha256,)
        ) as cur,
    ):
        return {row[0] for row in await cur.fetchall()}


async def incomplete_file_ids(db: Database) -> set[int]:
    """Ids of every file still being uploaded (their partials must stay)."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT f.id FROM boot_resource_files f JOIN boot_resource_sets s "
            "ON s.id = f.set_id JOIN boot_resources r ON r.id = s.resource_id "
            "WHERE r.rtype = ? AND f.bytes_done < f.size",
            (UPLOADED,),
        ) as cur,
    ):
        return {row[0] for row in await cur.fetchall()}


async def catalogue_names(db: Database) -> tuple[set[str], set[str]]:
    """(os, release and os/release names the sources offer, their arch/subarch pairs)."""
    async with (
        db.read() as conn,
        conn.execute("SELECT DISTINCT os, release, arch, subarch FROM boot_source_cache") as cur,
    ):
        rows = await cur.fetchall()
    names = {n for os, release, _a, _s in rows for n in (os, release, f"{os}/{release}")}
    return names, {f"{arch}/{subarch}" for _o, _r, arch, subarch in rows}


async def uploaded_base_image(db: Database, name: str, architecture: str) -> str:
    """The base image of the uploaded resource ``name``/``architecture``; "" if none."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT base_image FROM boot_resources WHERE name = ? AND architecture = ?"
            " AND rtype = ?",
            (name, architecture, UPLOADED),
        ) as cur,
    ):
        row = await cur.fetchone()
    return str(row[0]) if row is not None else ""


def next_version(taken: set[str], today: str) -> str:
    """``today``, or ``today.N`` past every set of today (even deleted ones' successors).

    Clients take the newest set as the greatest version, so a new one must sort last.
    """
    same_day = [v for v in taken if v == today or v.startswith(f"{today}.")]
    if not same_day:
        return today
    suffixes = [
        int(v.partition(".")[2] or 0)
        for v in same_day
        if v.partition(".")[2].isdigit() or v == today
    ]
    return f"{today}.{max(suffixes, default=0) + 1}"


async def create_upload(
    db: Database, new: NewUpload, *, sha256: str, size: int, stored: bool
) -> tuple[int, int]:
    """Add a set with one file for ``new`` (creating the resource); (resource id, file id).

    ``stored``: the blob is in the store already, so the file is complete.
    Raises ResourceClashError when a synced resource has that name and architecture.
    """

    async def work(conn: Connection) -> tuple[int, int]:
        now = now_iso()
        async with conn.execute(
            "SELECT id, rtype, extra FROM boot_resources WHERE name = ? AND architecture = ?",
            (new.name, new.architecture),
        ) as cur:
            row = await cur.fetchone()
        if row is not None and row["rtype"] != UPLOADED:
            raise ResourceClashError(new.name)
        extra = dict(json.loads(row["extra"])) if row is not None else {}
        extra.update(subarches=new.architecture.partition("/")[2], title=new.title)
        extra[_KEEP_OLD] = new.keep_old
        if row is None:
            cur = await conn.execute(
                "INSERT INTO boot_resources (rtype, name, architecture, base_image, extra, "
                "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (UPLOADED, new.name, new.architecture, new.base_image, json.dumps(extra), now, now),
            )
            resource_id = cur.lastrowid
        else:
            resource_id = row["id"]
            await conn.execute(
                "UPDATE boot_resources SET base_image = ?, extra = ?, updated = ? WHERE id = ?",
                (new.base_image, json.dumps(extra), now, resource_id),
            )
        async with conn.execute(
            "SELECT version FROM boot_resource_sets WHERE resource_id = ?", (resource_id,)
        ) as cur:
            taken = {r[0] for r in await cur.fetchall()}
        version = next_version(taken, datetime.now(UTC).strftime("%Y%m%d"))
        cur = await conn.execute(
            "INSERT INTO boot_resource_sets (resource_id, version, label, created) "
            "VALUES (?, ?, ?, ?) RETURNING id",
            (resource_id, version, UPLOADED_LABEL, now),
        )
        set_id = cur.lastrowid
        cur = await conn.execute(
            "INSERT INTO boot_resource_files (set_id, filename, filetype, sha256, size, "
            "bytes_done) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (set_id, new.filetype, new.filetype, sha256, size, size if stored else 0),
        )
        file_id = cur.lastrowid
        assert resource_id is not None
        assert file_id is not None
        if stored and not new.keep_old:
            await _drop_older_sets(conn, resource_id, file_id)
        return resource_id, file_id

    return await atomic(db, work)


async def record_progress(db: Database, file_id: int, bytes_done: int) -> None:
    """Record that the partial of ``file_id`` holds ``bytes_done`` good bytes."""
    await atomic(
        db,
        lambda conn: conn.execute(
            "UPDATE boot_resource_files SET bytes_done = ? WHERE id = ?", (bytes_done, file_id)
        ),
    )


async def complete(db: Database, upload: UploadFile) -> None:
    """Mark ``upload`` stored, with every other file waiting for the same blob.

    Older sets of the resource are deleted unless its upload asked to keep them.
    """

    async def work(conn: Connection) -> None:
        await conn.execute(
            "UPDATE boot_resource_files SET bytes_done = size WHERE sha256 = ? AND size = ?",
            (upload.sha256, upload.size),
        )
        async with conn.execute(
            "SELECT extra FROM boot_resources WHERE id = ?", (upload.resource_id,)
        ) as cur:
            row = await cur.fetchone()
        extra: Mapping[str, object] = json.loads(row[0]) if row is not None else {}
        if not extra.get(_KEEP_OLD, False):
            await _drop_older_sets(conn, upload.resource_id, upload.id)

    await atomic(db, work)


async def _drop_older_sets(conn: Connection, resource_id: int, file_id: int) -> None:
    await conn.execute(
        "DELETE FROM boot_resource_sets WHERE resource_id = ? AND id < "
        "(SELECT set_id FROM boot_resource_files WHERE id = ?)",
        (resource_id, file_id),
    )
