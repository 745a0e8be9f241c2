"""Debian architecture names (MAAS's) for the machine names ``uname -m`` gives."""

from __future__ import annotations

import platform

DEBIAN_ARCHES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "i386": "i386",
    "i686": "i386",
    "armv7l": "armhf",
    "riscv64": "riscv64",
}


def debian_architecture(machine: str | None = None) -> str:
    """The Debian name of ``machine`` (this host's by default); unknown names pass through."""
    name = (machine if machine is not None else platform.machine()).lower()
    return DEBIAN_ARCHES.get(name, name)
