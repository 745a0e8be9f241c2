"""A full disk under PostgreSQL is the import's ``no_space`` failure, as SQLite's is."""

from __future__ import annotations

import sqlite3

import asyncpg  # type: ignore[import-untyped]

from region.images.space import is_disk_full


def translated(exc: BaseException) -> sqlite3.Error:
    """``exc`` as region/db/postgres.py re-raises it: a sqlite3 error raised from the asyncpg one."""
    try:
        try:
            raise exc
        except asyncpg.PostgresError as pg:
            raise sqlite3.OperationalError(str(pg)) from pg
    except sqlite3.OperationalError as error:
        return error


def test_postgresql_disk_full_behind_the_translated_error_is_a_full_disk() -> None:
    """SQLSTATE 53100 (disk_full) reached through the cause chain counts as a full disk."""
    error = translated(asyncpg.DiskFullError("could not extend file: No space left on device"))
    assert is_disk_full(error)


def test_other_postgresql_errors_are_not_a_full_disk() -> None:
    """A unique violation or a lost connection is not a full disk."""
    assert not is_disk_full(translated(asyncpg.UniqueViolationError("duplicate key")))
    assert not is_disk_full(translated(asyncpg.AdminShutdownError("terminating connection")))


def test_sqlite_full_is_still_a_full_disk() -> None:
    """SQLite's own ``database or disk is full`` keeps counting."""
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
