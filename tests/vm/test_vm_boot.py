"""A QEMU machine network-boots the newest Ubuntu image from a rack: iPXE/HTTP, pxelinux/TFTP.

Everything on the way is real: a signed stream (the sample stream with Debian's
kernel and a busybox initrd as the newest noble amd64 ``ga-24.04`` kernel and
initrd, ``make vm-boot-files``) imported by a ``bootsync-regiond`` process,
pulled by a ``bootsync-rackd`` process serving etc/boot/'s templates, and
QEMU (``make vm-tools``: Debian's qemu-system-x86 and its iPXE ROMs, TCG, no
KVM needed) booting from its network card. QEMU's user-mode network is the
site's DHCP: its ``bootfile`` option is the rack's ``/images/boot.ipxe`` (iPXE
over HTTP; the rack's URL in it comes from the Host the machine used) or the
rack's ``lpxelinux.0`` over TFTP (BIOS pxelinux, Debian's, from the stream's
bootloader archive; it reads ``pxelinux.cfg/default`` and loads the kernel and
initrd over TFTP; behind QEMU's NAT the rack's URL comes from
``server.advertise_url``). The host's loopback, where the rack listens, is
10.0.2.2 to the machine. The machine's serial console must show the kernel
starting and the initrd's /init running with the command line rendered for
10.0.2.2.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from common.mirror.samplestream import SampleStream
from common.trust.keyrings import SigningKey
from tests.fakes.daemons import DaemonProcess, bootsync, free_port, region_daemon
from tests.fakes.streams import short_dir
from tests.fakes.upstream import FakeUpstream
from tests.vm.initrd import BOOTED_MARKER, build_initrd
from tests.vm.stream import SNAPSHOT_DIR, write_bootable_stream

REPO = Path(__file__).resolve().parents[2]
BOOT_FILES = Path(os.environ.get("BOOTSYNC_VM_BOOT_FILES", REPO / ".cache" / "vm"))
QEMU = shutil.which("qemu-system-x86_64")
GUEST_HOST = "10.0.2.2"  # the host's loopback, seen from QEMU's user-mode network
BOOT_TIMEOUT_S = 240.0

pytestmark = [pytest.mark.slow, pytest.mark.vm, pytest.mark.timeout(420)]


def missing_parts() -> str | None:
    """What this machine lacks to boot the VM (with the make target that installs it), or None."""
    if QEMU is None:
        return "qemu-system-x86_64 missing: run `make vm-tools`"
    if not all((BOOT_FILES / name).exists() for name in ("vmlinuz", "busybox", "syslinux")):
        return f"no kernel, busybox or syslinux in {BOOT_FILES}: run `make vm-boot-files`"
    return None


@pytest.fixture(autouse=True)
def vm_parts() -> None:
    """Skip without QEMU or the boot files, but fail under ``make test`` (CI), which sets
    ``BOOTSYNC_REQUIRE_VM`` after installing them: there a skip would hide a broken setup."""
    if (missing := missing_parts()) is not None:
        if os.environ.get("BOOTSYNC_REQUIRE_VM"):
            pytest.fail(f"make test must boot the VM: {missing}")
        pytest.skip(missing)


@dataclass
class Site:
    """A region that imported the bootable stream and a rack that pulled it."""

    region: DaemonProcess
    rack: DaemonProcess
    tftp_port: int
    bootfile: str  # the DHCP filename QEMU's user-mode network hands out
    work: Path
    timings: dict[str, float]


@pytest.fixture
async def bootable_stream(upstream_key: SigningKey, tmp_path: Path) -> SampleStream:
    """The sample stream with Debian's kernel and the busybox initrd as noble's ga-24.04."""
    kernel = await asyncio.to_thread((BOOT_FILES / "vmlinuz").read_bytes)
    initrd = await asyncio.to_thread(build_initrd, BOOT_FILES / "busybox")
    syslinux = {
        path.name: await asyncio.to_thread(path.read_bytes)
        for path in sorted((BOOT_FILES / "syslinux").iterdir())
    }
    return await asyncio.to_thread(
        partial(
            write_bootable_stream,
            tmp_path / "upstream",
            upstream_key,
            kernel=kernel,
            initrd=initrd,
            syslinux=syslinux,
        )
    )


@pytest.fixture(params=["ipxe-http", "pxelinux-tftp"])
async def site(
    request: pytest.FixtureRequest,
    fake_upstream: FakeUpstream,
    bootable_stream: SampleStream,
    tmp_path: Path,
) -> AsyncIterator[Site]:
    """The region and the rack, started; the rack serves etc/boot/ and its first snapshot;
    the machine is to boot with iPXE over HTTP or with pxelinux over TFTP (``request.param``)."""
    port, tftp_port = free_port(), free_port()
    guest_url = f"http://{GUEST_HOST}:{port}"
    if request.param == "ipxe-http":
        server, level, bootfile = "", "info", f"{guest_url}/images/boot.ipxe"
    else:  # debug: each TFTP transfer is logged
        server, level = f'advertise_url = "{guest_url}"\n', "debug"
        bootfile = f"tftp://{GUEST_HOST}:{tftp_port}/lpxelinux.0"
    timings: dict[str, float] = {}
    with short_dir("bsvm") as data:
        fake_upstream.serve_directory(bootable_stream.root)
        started = time.monotonic()
        region = region_daemon(
            tmp_path, data / "region", upstream=fake_upstream, stream=bootable_stream
        )
        await region.start()
        rack: DaemonProcess | None = None
        try:
            summary = (await region.wait_for_event("import_finished", timeout=120))[0]
            assert summary["outcome"] == "ok", summary
            timings["region_import_s"] = time.monotonic() - started
            secret = tmp_path / "rack-secret"
            secret.write_text(await bootsync("rack-secret", "--data-dir", str(data / "region")))
            config = tmp_path / "rackd.toml"
            config.write_text(
                f'[server]\nhostname = "vm-rack"\n{server}'
                f'[tftp]\nlisten = "127.0.0.1:{tftp_port}"\n'
                f'[boot]\ntemplates_dir = "{REPO / "etc" / "boot"}"\n'
                f'[log]\nformat = "json"\nlevel = "{level}"\n'
            )
            rack = DaemonProcess(
                "rack",
                [
                    *("--config", str(config), "--region", region.url),
                    *("--secret-file", str(secret), "--listen", f"127.0.0.1:{port}"),
                    *("--data-dir", str(data / "rack")),
                ],
                log_path=tmp_path / "rackd.log",
                port=port,
            )
            pulled = time.monotonic()
            await rack.start(ready_path="/healthz", timeout=120)  # 200 once a snapshot is served
            timings["rack_pull_s"] = time.monotonic() - pulled
            yield Site(region, rack, tftp_port, bootfile, tmp_path, timings)
        finally:
            if rack is not None:
                await rack.stop()
            await region.stop()


async def boot_machine(bootfile: str, serial_log: Path) -> tuple[int | None, float]:
    """Run QEMU until the machine powers itself off (or the timeout): its exit code
    (None when it had to be killed) and the seconds it ran."""
    assert QEMU is not None
    argv = [
        QEMU,
        *("-accel", "tcg", "-m", "512", "-display", "none", "-no-reboot"),
        *("-serial", f"file:{serial_log}", "-monitor", "none"),
        *("-netdev", f"user,id=n0,bootfile={bootfile}", "-device", "virtio-net-pci,netdev=n0"),
        *("-boot", "n"),
    ]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.wait_for(proc.wait(), BOOT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, time.monotonic() - started
    return proc.returncode, time.monotonic() - started


async def test_a_machine_boots_the_newest_ubuntu_kernel_from_the_rack(site: Site) -> None:
    """iPXE (boot.ipxe over HTTP) or lpxelinux.0 (pxelinux.cfg/default over TFTP) gets
    a config rendered for 10.0.2.2, then the kernel and initrd the region imported,
    and the kernel boots to the initrd's /init on ttyS0 with the rendered command line."""
    rack_url = f"http://{GUEST_HOST}:{site.rack.port}"
    serial = site.work / "serial.log"
    code, boot_s = await boot_machine(site.bootfile, serial)
    site.timings["vm_boot_s"] = boot_s
    console = await asyncio.to_thread(serial.read_text, errors="replace") if serial.exists() else ""
    lines = console.replace("\r", "").splitlines()
    timings = ", ".join(f"{k}={v:.1f}" for k, v in site.timings.items())
    print(f"\nvm boot ({site.bootfile}) timings: {timings}")
    print("\n".join(line for line in lines if "Linux version" in line or "bootsync-vm" in line))
    assert code == 0, f"QEMU did not power off by itself ({timings}):\n{console[-3000:]}"
    assert any(line.startswith("[    0.000000] Linux version ") for line in lines), console[:3000]
    assert BOOTED_MARKER in lines, console[-3000:]
    cmdline = next(line for line in lines if line.startswith("bootsync-vm: cmdline: "))
    assert f" ip=dhcp root=squash:{rack_url}/images/{SNAPSHOT_DIR}/squashfs " in cmdline
    assert " console=ttyS0,115200n8" in cmdline
    sent = {e["file"].lstrip("/") for e in site.rack.events("tftp_transfer_finished")}
    if site.bootfile.endswith("/boot.ipxe"):
        assert "initrd=boot-initrd ip=dhcp " in cmdline
        assert sent == set()
    else:  # pxelinux: bootloader, config, kernel and initrd all over TFTP
        assert f"initrd={SNAPSHOT_DIR}/boot-initrd ip=dhcp " in cmdline
        assert "BOOTIF=01-" in cmdline  # IPAPPEND 2
        expected = {"lpxelinux.0", "ldlinux.c32", "pxelinux.cfg/default"}
        assert expected | {f"{SNAPSHOT_DIR}/boot-kernel", f"{SNAPSHOT_DIR}/boot-initrd"} <= sent
