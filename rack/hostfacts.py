"""What the rack reports about its host at registration, read from the host's own files.

MAAS shows a rack controller's architecture (Debian naming), CPU count and
speed, memory (MiB), OS and release, interfaces and addresses; the rack sends
them in its :class:`~common.rackproto.Registration`. Everything is read from
``/etc/os-release``, ``/proc`` and ``/sys/class/net`` (IPv4 addresses with the
``SIOCGIFADDR`` ioctl); a file the host lacks gives an empty or zero fact, never
an error. :func:`gather_host_facts` blocks: call it in a worker thread.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from common.hostarch import debian_architecture
from common.rackproto import (
    MAX_ADDRESSES,
    MAX_FACT_LENGTH,
    MAX_INTERFACES,
    HostFacts,
    HostInterface,
)
from common.version import VERSION

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
ARPHRD_LOOPBACK = 772


def gather_host_facts() -> HostFacts:
    """This host's facts (blocking: it reads files and asks the kernel)."""
    return read_host_facts(Path("/"), cpu_count=os.cpu_count(), ipv4=ipv4_addresses)


def read_host_facts(
    root: Path,
    *,
    machine: str | None = None,
    cpu_count: int | None,
    ipv4: Callable[[str], list[str]],
) -> HostFacts:
    """The facts of the host whose files are under ``root`` (``ipv4`` gives an interface's)."""
    release = _os_release(root)
    return HostFacts(
        architecture=debian_architecture(machine),
        cpu_count=cpu_count or 1,
        cpu_speed=_cpu_speed(root),
        memory=_memory_mib(root),
        osystem=release.get("ID", "")[:MAX_FACT_LENGTH],
        distro_series=release.get("VERSION_CODENAME", "")[:MAX_FACT_LENGTH],
        version=VERSION,
        interfaces=_interfaces(root, ipv4),
    )


def ipv4_addresses(name: str) -> list[str]:
    """The IPv4 address of interface ``name`` with its prefix (``10.0.0.5/24``), if it has one."""
    request = struct.pack("256s", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            address = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)[20:24]
            netmask = fcntl.ioctl(sock.fileno(), SIOCGIFNETMASK, request)[20:24]
        except OSError:
            return []
    prefix = bin(int.from_bytes(netmask, "big")).count("1")
    return [f"{ipaddress.IPv4Address(address)}/{prefix}"]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _os_release(root: Path) -> dict[str, str]:
    text = _read(root / "etc/os-release") or _read(root / "usr/lib/os-release")
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip().strip("\"'")
    return values


def _memory_mib(root: Path) -> int:
    for line in _read(root / "proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) // 1024
    return 0


def _cpu_speed(root: Path) -> int:
    """The fastest CPU's MHz: cpufreq's maximum if the kernel has it, else /proc/cpuinfo's."""
    max_khz = _read(root / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    if max_khz.isdigit():
        return int(max_khz) // 1000
    speeds = []
    for line in _read(root / "proc/cpuinfo").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "cpu MHz":
            try:
                speeds.append(int(float(value)))
            except ValueError:
                continue
    return max(speeds, default=0)


def _ipv6_addresses(root: Path) -> dict[str, list[str]]:
    """Global and unique-local IPv6 addresses by interface, from /proc/net/if_inet6."""
    found: dict[str, list[str]] = {}
    for line in _read(root / "proc/net/if_inet6").splitlines():
        fields = line.split()
        if len(fields) != 6:
            continue
        try:
            address = ipaddress.IPv6Address(int(fields[0], 16))
            prefix = int(fields[2], 16)
        except ValueError:
            continue
        if address.is_link_local or address.is_loopback:
            continue
        found.setdefault(fields[5], []).append(f"{address}/{prefix}")
    return found


def _interfaces(root: Path, ipv4: Callable[[str], list[str]]) -> list[HostInterface]:
    net = root / "sys/class/net"
    try:
        names = sorted(entry.name for entry in net.iterdir())[:MAX_INTERFACES]
    except OSError:
        return []
    ipv6 = _ipv6_addresses(root)
    interfaces = []
    for name in names:
        here = net / name
        flags = _number(_read(here / "flags"), base=16)
        if flags & IFF_LOOPBACK or _number(_read(here / "type")) == ARPHRD_LOOPBACK:
            continue
        interfaces.append(
            HostInterface(
                name=name[:MAX_FACT_LENGTH],
                mac_address=_read(here / "address").strip()[:MAX_FACT_LENGTH],
                mtu=_number(_read(here / "mtu")) or 1500,
                enabled=bool(flags & IFF_UP),
                type=_interface_type(root, here),
                # The region refuses more: report what it takes rather than not register.
                addresses=[*ipv4(name), *ipv6.get(name, [])][:MAX_ADDRESSES],
            )
        )
    return interfaces


def _interface_type(root: Path, here: Path) -> str:
    if (here / "bridge").is_dir():
        return "bridge"
    if (here / "bonding").is_dir():
        return "bond"
    if (root / "proc/net/vlan" / here.name).exists():
        return "vlan"
    return "physical"


def _number(text: str, *, base: int = 10) -> int:
    try:
        return int(text.strip(), base)
    except ValueError:
        return 0
