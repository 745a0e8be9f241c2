"""Resolve a TFTP file name inside one snapshot (blocking: call it in a worker thread).

TFTP clients send names with a leading ``/`` (stripped, as many as there are)
and in the case they were asked for (kept). A name with a ``..``, ``.`` or hidden
segment, a backslash, a NUL or an empty segment is refused; so is one whose
symlinks lead out of the snapshot (the root's boot-file links lead into
``bootloader/``, inside it).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


class Refused(Exception):
    """A name that is not served: ``not_found`` or ``access`` (an escape attempt)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class OpenFile:
    """A snapshot file held open for one transfer (closed by its owner)."""

    fd: int
    size: int
    path: Path


def clean_name(filename: str) -> str:
    """``filename`` as a path relative to the snapshot; Refused when it could escape."""
    name = filename.lstrip("/")
    if not name:
        raise Refused("not_found", "no file name")
    if "\\" in name or "\x00" in name:
        raise Refused("access", "a backslash or NUL in the file name")
    for part in name.split("/"):
        if part in ("", ".", "..") or part.startswith("."):
            raise Refused("access", f"path segment {part!r} is not allowed")
    return name


def open_bytes(data: bytes, path: Path) -> OpenFile:
    """``data`` (a rendered boot config) as an open in-memory file named after ``path``."""
    fd = os.memfd_create("bootsync-tftp", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        os.close(fd)
        raise
    return OpenFile(fd=fd, size=len(data), path=path)


def open_in_snapshot(snapshot: Path, filename: str) -> OpenFile:
    """Open ``filename`` of ``snapshot`` for reading; Refused when missing or outside it."""
    name = clean_name(filename)
    base = os.path.realpath(snapshot)
    real = os.path.realpath(Path(base) / name)
    if not real.startswith(base + os.sep):
        raise Refused("access", "the name leads out of the snapshot")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise Refused("not_found", "file not found") from None
    except OSError as exc:
        raise Refused("not_found", exc.strerror or "cannot open") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Refused("not_found", "not a file")
    return OpenFile(fd=fd, size=info.st_size, path=Path(real))
