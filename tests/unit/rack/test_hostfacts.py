"""The rack's host facts: read from the host's own files, in MAAS's units and names."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from common.hostarch import debian_architecture
from common.rackproto import MAX_ADDRESSES, Registration, registration_from_json, to_json
from common.version import VERSION
from rack.hostfacts import gather_host_facts, read_host_facts


def write(root: Path, path: str, text: str) -> None:
    """Write ``text`` at ``root/path``, making the directories."""
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


@pytest.fixture
def fake_host(tmp_path: Path) -> Path:
    """A host tree: Ubuntu noble, 4 CPUs at 3000 MHz, 8 GiB, eth0 and br0, lo, IPv6 addresses."""
    write(tmp_path, "etc/os-release", 'NAME="Ubuntu"\nID=ubuntu\nVERSION_CODENAME=noble\n')
    write(tmp_path, "proc/meminfo", "MemTotal:        8388608 kB\nMemFree: 1 kB\n")
    write(
        tmp_path,
        "proc/cpuinfo",
        "".join(f"processor\t: {n}\ncpu MHz\t\t: {2000 + n * 250}.500\n\n" for n in range(4)),
    )
    for name, mac, mtu, flags in (
        ("eth0", "52:54:00:aa:bb:cc", "9000", "0x1003"),
        ("br0", "52:54:00:dd:ee:ff", "1500", "0x1002"),
        ("lo", "00:00:00:00:00:00", "65536", "0x9"),
    ):
        write(tmp_path, f"sys/class/net/{name}/address", mac + "\n")
        write(tmp_path, f"sys/class/net/{name}/mtu", mtu + "\n")
        write(tmp_path, f"sys/class/net/{name}/flags", flags + "\n")
        write(tmp_path, f"sys/class/net/{name}/type", ("772" if name == "lo" else "1") + "\n")
    (tmp_path / "sys/class/net/br0/bridge").mkdir()
    write(
        tmp_path,
        "proc/net/if_inet6",
        "fd000000000000000000000000000005 02 40 00 80     eth0\n"
        "fe800000000000005054fffeaabbcc00 02 40 20 80     eth0\n"
        "00000000000000000000000000000001 01 80 10 80       lo\n",
    )
    return tmp_path


def test_facts_come_from_the_host_files(fake_host: Path) -> None:
    """os-release, meminfo (MiB), cpuinfo (fastest MHz), sys/class/net and if_inet6 are read."""
    facts = read_host_facts(
        fake_host,
        machine="aarch64",
        cpu_count=4,
        ipv4=lambda name: ["10.0.0.5/24"] if name == "eth0" else [],
    )
    assert (facts.architecture, facts.cpu_count, facts.cpu_speed, facts.memory) == (
        "arm64",
        4,
        2750,
        8192,
    )
    assert (facts.osystem, facts.distro_series, facts.version) == ("ubuntu", "noble", VERSION)
    by_name = {i.name: i for i in facts.interfaces}
    assert sorted(by_name) == ["br0", "eth0"]  # loopback left out
    eth0 = by_name["eth0"]
    assert (eth0.mac_address, eth0.mtu, eth0.enabled, eth0.type) == (
        "52:54:00:aa:bb:cc",
        9000,
        True,
        "physical",
    )
    assert eth0.addresses == ["10.0.0.5/24", "fd00::5/64"]  # link-local left out
    assert (by_name["br0"].type, by_name["br0"].enabled) == ("bridge", False)


def test_missing_files_give_empty_or_zero_facts(tmp_path: Path) -> None:
    """A host without /proc or /etc/os-release still reports what it can."""
    facts = read_host_facts(tmp_path, machine="x86_64", cpu_count=None, ipv4=lambda _name: [])
    assert facts.architecture == "amd64"
    assert (facts.cpu_count, facts.cpu_speed, facts.memory) == (1, 0, 0)
    assert (facts.osystem, facts.distro_series, facts.interfaces) == ("", "", [])


@pytest.mark.parametrize(
    ("machine", "debian"),
    [("x86_64", "amd64"), ("aarch64", "arm64"), ("ppc64le", "ppc64el"), ("s390x", "s390x")],
)
def test_machine_names_become_debian_architectures(machine: str, debian: str) -> None:
    """uname's machine names map to Debian's, as MAAS names architectures."""
    assert debian_architecture(machine) == debian


def test_this_host_reports_its_own_facts() -> None:
    """On the real host: its architecture, CPU count, memory and os-release values."""
    facts = gather_host_facts()
    assert facts.architecture == debian_architecture(platform.machine())
    assert facts.cpu_count == (os.cpu_count() or 1)
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = int(
        next(line for line in meminfo.splitlines() if line.startswith("MemTotal:")).split()[1]
    )
    assert facts.memory == total_kib // 1024
    release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    assert facts.osystem == release["ID"].strip('"')
    assert facts.distro_series == release.get("VERSION_CODENAME", "").strip('"')
    names = {i.name for i in facts.interfaces}
    assert "lo" not in names
    assert names == {p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo"}


def test_a_host_with_too_many_addresses_still_sends_facts_the_region_accepts(
    fake_host: Path,
) -> None:
    """70 IPv6 addresses on one interface: the first 64 are sent, and the region parses them."""
    lines = "".join(
        f"fd00000000000000000000000000{n:04x} 02 40 00 80     eth0\n" for n in range(70)
    )
    (fake_host / "proc/net/if_inet6").write_text(lines)
    facts = read_host_facts(fake_host, machine="x86_64", cpu_count=2, ipv4=lambda _name: [])
    eth0 = next(i for i in facts.interfaces if i.name == "eth0")
    assert len(eth0.addresses) == MAX_ADDRESSES
    body = to_json(Registration(hostname="r", url="http://r:5248", host=facts))
    assert registration_from_json(body).host == facts
