"""Ids are never reused: a deleted row's id is never handed to a later row of its table."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from region.db import resources as repo_resources
from region.db import sources as repo_sources
from region.db.connection import Database, migrations, open_db
from region.db.uploads import NewUpload, create_upload

NOW = "2025-01-01T00:00:00"
MIGRATION = "_autoincrement_ids.sql"
# Tables whose rows the API shows by id (and the catalogue and import history):
# each must count its ids up for ever.
COUNTED = (
    "users",
    "api_tokens",
    "boot_sources",
    "boot_source_selections",
    "boot_source_cache",
    "boot_resources",
    "boot_resource_sets",
    "boot_resource_files",
    "import_runs",
)


def upload(name: str) -> NewUpload:
    """An upload request for image ``name``."""
    return NewUpload(
        name=name,
        architecture="amd64/generic",
        title=name,
        filetype="tgz",
        base_image="",
        keep_old=False,
    )


async def rows(db: Database, sql: str, *params: Any) -> list[dict[str, Any]]:
    """The rows ``sql`` selects, as dicts, read on a reader."""
    async with db.read() as conn, conn.execute(sql, params) as cur:
        return [dict(row) for row in await cur.fetchall()]


async def test_every_table_with_an_id_counts_it_up_with_autoincrement(tmp_path: Path) -> None:
    """Each table keyed by an integer ``id`` is declared AUTOINCREMENT, the counted ones too."""
    async with open_db(tmp_path / "r.db") as db:
        tables = await rows(db, "SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        keyed = []
        for table in tables:
            info = await rows(db, f"PRAGMA table_info({table['name']})")
            if [(c["name"], c["type"]) for c in info if c["pk"]] == [("id", "INTEGER")]:
                keyed.append(table)
    assert set(COUNTED) <= {t["name"] for t in keyed}
    assert [t["name"] for t in keyed if "AUTOINCREMENT" not in t["sql"].upper()] == []


async def test_a_source_and_a_selection_made_after_a_delete_get_new_ids(tmp_path: Path) -> None:
    """Delete the newest source (and selection), create another: its id is larger."""
    async with open_db(tmp_path / "r.db") as db:
        first = await repo_sources.create_source(db, url="http://a/", keyring_data=b"k")
        chosen = await repo_sources.create_selection(db, first.id, os="ubuntu", release="noble")
        assert await repo_sources.delete_selection(db, first.id, chosen.id)
        again = await repo_sources.create_selection(db, first.id, os="ubuntu", release="noble")
        assert await repo_sources.delete_source(db, first.id)
        second = await repo_sources.create_source(db, url="http://a/", keyring_data=b"k")
        kept = await repo_sources.create_selection(db, second.id, os="ubuntu", release="noble")
    assert second.id > first.id
    assert chosen.id < again.id < kept.id


async def test_a_resource_uploaded_after_a_delete_gets_new_resource_set_and_file_ids(
    tmp_path: Path,
) -> None:
    """Delete the newest upload, upload again: resource, set and file ids are all larger."""
    async with open_db(tmp_path / "r.db") as db:
        first = await create_upload(db, upload("mine"), sha256="a" * 64, size=1, stored=True)
        first_set = await rows(db, "SELECT id FROM boot_resource_sets")
        assert await repo_resources.delete_resource(db, first[0])
        second = await create_upload(db, upload("mine"), sha256="b" * 64, size=1, stored=True)
        second_set = await rows(db, "SELECT id FROM boot_resource_sets")
    assert second[0] > first[0]
    assert second[1] > first[1]
    assert second_set[0]["id"] > first_set[0]["id"]


def _database_before(path: Path, number: int, tables: tuple[str, ...]) -> dict[str, Any]:
    """A database at schema ``number - 1`` with rows in every table the migration rebuilds.

    Returns the rows of ``tables`` as they are before the migration.
    """
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        for n, _name, sql in migrations():
            if n < number:
                conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {n};\nCOMMIT;")
        conn.executescript(
            f"""
            PRAGMA foreign_keys = ON;
            INSERT INTO users VALUES (1, 'admin', 'a@x', 1, '{NOW}'), (2, 'bob', '', 0, '{NOW}');
            INSERT INTO api_tokens VALUES (4, 2, 'ck', 'tk', 'ts', '{NOW}');
            INSERT INTO user_passwords VALUES (2, 'scrypt$1$1$1$00$00', '{NOW}');
            INSERT INTO web_sessions VALUES ('h', 2, 'c', '{NOW}', '{NOW}');
            INSERT INTO boot_sources VALUES (1, 'http://a/', '', x'01', '{NOW}', '{NOW}'),
                (3, 'http://b/', '/k.gpg', x'', '{NOW}', '{NOW}');
            INSERT INTO boot_source_selections VALUES
                (5, 3, 'ubuntu', 'noble', '["amd64"]', '["*"]', '["*"]', '{NOW}', '{NOW}');
            INSERT INTO boot_source_cache (id, boot_source_id, os, arch, subarch, release, label,
                created, updated) VALUES (7, 3, 'ubuntu', 'amd64', 'ga-24.04', 'noble',
                'stable', '{NOW}', '{NOW}');
            INSERT INTO boot_source_status (boot_source_id, last_error) VALUES (3, 'e');
            INSERT INTO boot_resources (id, rtype, name, architecture, created, updated)
                VALUES (9, 0, 'ubuntu/noble', 'amd64/ga-24.04', '{NOW}', '{NOW}');
            INSERT INTO boot_resource_sets VALUES (10, 9, '20250101', 'stable', '{NOW}');
            INSERT INTO boot_resource_files (id, set_id, filename, filetype, sha256, size)
                VALUES (11, 10, 'squashfs', 'squashfs', '{"c" * 64}', 5);
            INSERT INTO import_runs (id, started) VALUES (12, '{NOW}');
            """
        )
        return {
            t: [dict(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in tables
        }
    finally:
        conn.close()


async def test_the_migration_keeps_every_row_and_foreign_key(tmp_path: Path) -> None:
    """Rebuilt tables keep their rows and ids; cascades still reach them; new ids count on."""
    shipped = await asyncio.to_thread(migrations)
    [number] = [n for n, name, _sql in shipped if name.endswith(MIGRATION)]
    path = tmp_path / "r.db"
    tables = (*COUNTED, "user_passwords", "web_sessions", "boot_source_status")
    before = await asyncio.to_thread(_database_before, path, number, tables)
    async with open_db(path, readers=1) as db:
        after = {t: await rows(db, f"SELECT * FROM {t} ORDER BY rowid") for t in tables}
        assert await rows(db, "PRAGMA foreign_key_check") == []
        indexes = {r["name"] for r in await rows(db, "SELECT name FROM sqlite_master")}
        async with db.write() as conn:
            await conn.execute("DELETE FROM boot_sources WHERE id = 3")
            await conn.execute("DELETE FROM users WHERE id = 2")
            await conn.execute("DELETE FROM boot_resources WHERE id = 9")
        left = {t: len(await rows(db, f"SELECT * FROM {t}")) for t in tables}
        newer = await repo_sources.create_source(db, url="http://c/", keyring_data=b"k")
    # Later migrations may add columns: compare those the rows had before.
    assert {
        t: [{k: r[k] for k in b} for r, b in zip(after[t], before[t], strict=True)] for t in tables
    } == before
    assert [r["id"] for r in after["boot_sources"]] == [1, 3]
    assert after["boot_sources"][0]["keyring_data"] == b"\x01"
    assert {"api_tokens_user_id", "boot_resource_files_sha256"} <= indexes
    assert left == {
        "users": 1,
        "api_tokens": 0,
        "boot_sources": 1,
        "boot_source_selections": 0,
        "boot_source_cache": 0,
        "boot_resources": 0,
        "boot_resource_sets": 0,
        "boot_resource_files": 0,
        "import_runs": 1,
        "user_passwords": 0,
        "web_sessions": 0,
        "boot_source_status": 0,
    }
    assert newer.id == 4  # 3 was the largest id ever given, though deleted since
