"""Crash-safe file writes: a file is seen whole, old or new, never half written.

Every writer goes the same way: a temp file in the target's own directory (so
the last step is one rename on one filesystem) → write → fsync the file →
rename over the target → fsync the directory (so the rename itself survives a
crash). A failed write removes its temp file and leaves the target untouched.

These functions block: call them through ``asyncio.to_thread`` from async code.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["commit_file", "fsync_dir", "temp_name", "write_atomic", "write_if_changed"]

# Of a target's name, at most this much goes into its temp file's name, so that
# ".<name>.<8 hex><suffix>" fits in one segment (NAME_MAX, 255 bytes) even when
# the target's own name takes all 255.
_TEMP_STEM_BYTES = 200


def temp_name(name: str, suffix: str) -> str:
    """A hidden, unique name for a temp file beside ``name`` that fits in one path segment."""
    stem = os.fsdecode(os.fsencode(name)[:_TEMP_STEM_BYTES])
    return f".{stem}.{secrets.token_hex(4)}{suffix}"


def write_atomic(
    path: Path, data: bytes, *, mode: int | None = None, exclusive: bool = False
) -> None:
    """Replace ``path`` with ``data`` atomically and durably; missing parents are created.

    ``mode`` is set exactly (umask aside) before any byte is written; None
    leaves the umask's default. With ``exclusive`` an existing ``path`` is
    kept and FileExistsError raised (the complete file appears by hard link,
    so concurrent creators agree on one winner and nobody reads it half done).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(temp_name(path.name, ".tmp"))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(temp, path)
            temp.unlink()
        else:
            temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_if_changed(path: Path, data: bytes, *, mode: int | None = None) -> bool:
    """:func:`write_atomic` unless ``path`` already holds ``data``; whether it wrote."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_atomic(path, data, mode=mode)
    return True


def commit_file(temp: Path, path: Path) -> None:
    """Move the finished file ``temp`` over ``path`` durably (same filesystem).

    ``temp`` is fsynced, renamed, and ``path``'s directory (created if
    missing) fsynced. On failure ``temp`` stays where it is.
    """
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
