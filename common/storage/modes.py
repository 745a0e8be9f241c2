"""Private modes for what a daemon keeps: data directories 0750, secret-bearing files 0600.

A daemon creates them so whatever the umask: directories with ``mkdir(mode=0o750)``
(the umask can only take bits away), secret files with :func:`create_private_file`
or :func:`common.storage.atomic.write_atomic` given ``mode=0o600``. At start it
tightens what an earlier version, a permissive umask or an operator left more open:

* :func:`tighten_dir`: a data directory keeps at most 0750 (a gpg home 0700);
* :func:`tighten_file`: a secret file keeps at most 0640, so group read stays when
  it is all the group has; anything more open (0644 under the default umask,
  0660) becomes 0600.

Each change is logged as ``data_dir_permissions_tightened``; a change the process
may not make (another owner) as ``data_dir_permissions_not_tightened``. These
functions block: call them through ``asyncio.to_thread`` from async code.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from common.ops.logging import get_logger

log = get_logger("storage.modes")

DATA_DIR_MODE = 0o750
"""The most a data directory may allow."""
PRIVATE_DIR_MODE = 0o700
"""The most a directory of secrets (a gpg home) may allow."""
PRIVATE_FILE_MODE = 0o600
"""What a secret-bearing file is created with, and tightened to."""
GROUP_READABLE_FILE_MODE = 0o640
"""The most a secret-bearing file may allow: an operator may grant its group read."""


def tighten_dir(path: Path, *, most: int = DATA_DIR_MODE) -> bool:
    """Take from directory ``path`` every permission bit outside ``most``; whether it changed.

    A missing directory is left alone (False).
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return False
    return _chmod(path, mode, mode & most)


def tighten_file(path: Path) -> bool:
    """Make the secret-bearing file ``path`` 0600 if it allows more than 0640; whether it did.

    A missing file is left alone (False).
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return False
    if not mode & ~GROUP_READABLE_FILE_MODE & 0o777:
        return False
    return _chmod(path, mode, mode & PRIVATE_FILE_MODE)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 exactly, or tighten it if it exists; whether new.

    Made for files another library creates later with the mode of an existing one
    (SQLite gives its ``-wal`` and ``-shm`` files the database file's mode).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        tighten_file(path)
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # exactly, whatever the umask took away
    finally:
        os.close(fd)
    return True


def _chmod(path: Path, mode: int, new: int) -> bool:
    if new == mode:
        return False
    try:
        path.chmod(new)
    except OSError as exc:
        log.warning(
            "data_dir_permissions_not_tightened",
            path=str(path),
            mode=f"{mode:04o}",
            wanted=f"{new:04o}",
            error=exc.strerror or str(exc),
        )
        return False
    log.warning(
        "data_dir_permissions_tightened", path=str(path), was=f"{mode:04o}", now=f"{new:04o}"
    )
    return True
