"""A tiny initrd for the VM boot test: Debian's static busybox and an /init that reports.

The archive is a gzip'd cpio (``newc``, what the kernel unpacks into its
initramfs) written here in Python: ``/bin/busybox``, ``/init`` (a busybox shell
script) and ``/dev/console``. /init prints :data:`BOOTED_MARKER` and the kernel's
command line on the console and powers the machine off, so QEMU exits on its own.
"""

from __future__ import annotations

import gzip
import io
import stat
from pathlib import Path

BOOTED_MARKER = "bootsync-vm: init running"

INIT = f"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys
/bin/busybox mount -t proc proc /proc
echo "{BOOTED_MARKER}"
echo "bootsync-vm: cmdline: $(/bin/busybox cat /proc/cmdline)"
/bin/busybox poweroff -f
"""


def _entry(
    out: io.BytesIO, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
) -> None:
    """One ``newc`` member: its header, its name and its data, each padded to 4 bytes."""
    encoded = name.encode() + b"\0"
    fields = (
        0,  # inode
        mode,
        0,  # uid
        0,  # gid
        1,  # nlink
        0,  # mtime
        len(data),
        0,  # devmajor
        0,  # devminor
        rdev[0],
        rdev[1],
        len(encoded),
        0,  # check
    )
    out.write(b"070701" + b"".join(f"{value:08x}".encode() for value in fields))
    out.write(encoded)
    out.write(b"\0" * (-(110 + len(encoded)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def build_initrd(busybox: Path) -> bytes:
    """The gzip'd cpio archive around ``busybox`` (blocking: reads it)."""
    out = io.BytesIO()
    for directory in ("bin", "dev", "proc", "sys"):
        _entry(out, directory, stat.S_IFDIR | 0o755)
    _entry(out, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    _entry(out, "bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes())
    _entry(out, "init", stat.S_IFREG | 0o755, INIT.encode())
    _entry(out, "TRAILER!!!", 0)
    return gzip.compress(out.getvalue(), mtime=0)
