"""Reads the images page needs beyond the repositories: set times and the last import."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from region.db.connection import Database


@dataclass(frozen=True)
class ImportRun:
    """One finished import: when, its outcome and its summary (errors among them)."""

    started: str
    finished: str
    outcome: str
    summary: dict[str, Any]


async def resource_updated(db: Database) -> dict[int, str]:
    """Resource id → when its newest set was written (the page's "last update")."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT resource_id, MAX(created) AS created FROM boot_resource_sets GROUP BY resource_id"
        ) as cur,
    ):
        return {int(row["resource_id"]): str(row["created"]) for row in await cur.fetchall()}


async def last_finished_import(db: Database) -> ImportRun | None:
    """The most recent import that ended (any outcome), or None."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT * FROM import_runs WHERE finished IS NOT NULL ORDER BY id DESC LIMIT 1"
        ) as cur,
    ):
        row = await cur.fetchone()
    if row is None:
        return None
    return ImportRun(
        started=row["started"],
        finished=row["finished"],
        outcome=row["outcome"] or "",
        summary=json.loads(row["summary"] or "{}"),
    )
