"""Telling a full disk from a bug: the import's ``no_space`` failure.

A selection larger than the free space (InsufficientSpaceError before any
download), a file write that meets ENOSPC, SQLite's ``database or disk is
full`` and PostgreSQL's ``disk_full`` (SQLSTATE 53100, which region/db/postgres.py
re-raises as a sqlite3 error from the asyncpg one) are one named failure of an import, with the bytes it needed and those
free, not a bug with a traceback.
"""

from __future__ import annotations

import errno
import sqlite3

from common.errors import InsufficientSpaceError

NO_SPACE = "no_space"
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
PG_DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full (asyncpg's DiskFullError.sqlstate)


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc``, or an exception it was raised from, says the disk is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, InsufficientSpaceError):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (
            getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "database or disk is full" in str(exc)
        ):
            return True
        if getattr(exc, "sqlstate", None) == PG_DISK_FULL:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
