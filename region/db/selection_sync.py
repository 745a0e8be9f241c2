"""Apply a Save selection of the images page: every change in one transaction.

Either all creates, updates and deletes of a plan are committed, or none is
(a failure part-way rolls back and the previous selections stay).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Protocol

from region.db.connection import Database
from region.db.sources import DuplicateError
from region.db.timestamps import now_iso


class SelectionValues(Protocol):
    """What a created or updated selection holds."""

    @property
    def os(self) -> str: ...
    @property
    def release(self) -> str: ...
    @property
    def arches(self) -> tuple[str, ...]: ...
    @property
    def subarches(self) -> tuple[str, ...]: ...
    @property
    def labels(self) -> tuple[str, ...]: ...


async def apply_selection_changes(
    db: Database,
    source_id: int,
    *,
    create: Sequence[SelectionValues],
    update: Sequence[tuple[int, SelectionValues]],
    delete: Sequence[int],
) -> None:
    """Create, update and delete selections of ``source_id`` atomically.

    Raises DuplicateError (nothing written) if a create clashes with a selection.
    """
    now = now_iso()
    try:
        async with db.write() as conn:
            for selection_id in delete:
                await conn.execute(
                    "DELETE FROM boot_source_selections WHERE id = ? AND boot_source_id = ?",
                    (selection_id, source_id),
                )
            for selection_id, sel in update:
                await conn.execute(
                    "UPDATE boot_source_selections SET arches = ?, subarches = ?, labels = ?, "
                    "updated = ? WHERE id = ? AND boot_source_id = ?",
                    (
                        json.dumps(list(sel.arches)),
                        json.dumps(list(sel.subarches)),
                        json.dumps(list(sel.labels)),
                        now,
                        selection_id,
                        source_id,
                    ),
                )
            for sel in create:
                await conn.execute(
                    "INSERT INTO boot_source_selections (boot_source_id, os, release, arches,"
                    " subarches, labels, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        source_id,
                        sel.os,
                        sel.release,
                        json.dumps(list(sel.arches)),
                        json.dumps(list(sel.subarches)),
                        json.dumps(list(sel.labels)),
                        now,
                        now,
                    ),
                )
    except sqlite3.IntegrityError as exc:
        raise DuplicateError(f"selection clash: {exc}") from exc
