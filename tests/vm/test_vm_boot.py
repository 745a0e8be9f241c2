"""A QEMU machine network-boots the newest Ubuntu image from a real rack, over iPXE and HTTP.

Everything on the way is real: a signed stream (the sample stream with Debian's
kernel and a busybox initrd as the newest noble amd64 ``ga-24.04`` kernel and
initrd, ``make vm-boot-files``) imported by a ``bootsync-regiond`` process,
pulled by a ``bootsync-rackd`` process serving etc/boot/'s templates, and
QEMU (``make vm-tools``: Debian's qemu-system-x86 and its iPXE ROMs, TCG, no
KVM needed) booting from its network card. QEMU's user-mode network is the
site's DHCP: its ``bootfile`` option is the rack's ``/images/boot.ipxe``, and
the host's loopback (where the rack listens) is 10.0.2.2 to the machine. The
machine's serial console must show the kernel starting and the initrd's /init
running with the command line boot.ipxe rendered for the address the machine
used.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
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

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.timeout(420),
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 missing: run `make vm-tools`"),
    pytest.mark.skipif(
        not (BOOT_FILES / "vmlinuz").is_file() or not (BOOT_FILES / "busybox").is_file(),
        reason=f"no kernel or busybox in {BOOT_FILES}: run `make vm-boot-files`",
    ),
]


@dataclass
class Site:
    """A region that imported the bootable stream and a rack that pulled it."""

    region: DaemonProcess
    rack: DaemonProcess
    work: Path
    timings: dict[str, float]


@pytest.fixture
async def bootable_stream(upstream_key: SigningKey, tmp_path: Path) -> SampleStream:
    """The sample stream with Debian's kernel and the busybox initrd as noble's ga-24.04."""
    kernel = await asyncio.to_thread((BOOT_FILES / "vmlinuz").read_bytes)
    initrd = await asyncio.to_thread(build_initrd, BOOT_FILES / "busybox")
    return await asyncio.to_thread(
        write_bootable_stream, tmp_path / "upstream", upstream_key, kernel=kernel, initrd=initrd
    )


@pytest.fixture
async def site(
    fake_upstream: FakeUpstream, bootable_stream: SampleStream, tmp_path: Path
) -> AsyncIterator[Site]:
    """The region and the rack, started; the rack serves etc/boot/ and its first snapshot."""
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
                '[server]\nhostname = "vm-rack"\n'
                f'[tftp]\nlisten = "127.0.0.1:{free_port()}"\n'
                f'[boot]\ntemplates_dir = "{REPO / "etc" / "boot"}"\n'
                '[log]\nformat = "json"\n'
            )
            port = free_port()
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
            yield Site(region=region, rack=rack, work=tmp_path, timings=timings)
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
        *("-netdev", f"user,id=n0,bootfile={bootfile}", "-device", "e1000,netdev=n0"),
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


async def test_a_machine_boots_the_newest_ubuntu_kernel_from_the_rack_over_ipxe_and_http(
    site: Site,
) -> None:
    """The machine's iPXE fetches boot.ipxe rendered for 10.0.2.2, then the kernel and
    initrd the region imported, and the kernel boots to the initrd's /init on ttyS0."""
    guest_authority = f"{GUEST_HOST}:{site.rack.port}"
    rack_url = f"http://{guest_authority}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{site.rack.url}/images/boot.ipxe", headers={"Host": guest_authority}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        script = await resp.text()
    assert f"kernel {rack_url}/images/{SNAPSHOT_DIR}/boot-kernel " in script
    serial = site.work / "serial.log"
    code, boot_s = await boot_machine(f"{rack_url}/images/boot.ipxe", serial)
    site.timings["vm_boot_s"] = boot_s
    console = await asyncio.to_thread(serial.read_text, errors="replace") if serial.exists() else ""
    lines = console.splitlines()
    timings = ", ".join(f"{k}={v:.1f}" for k, v in site.timings.items())
    print(f"\nvm boot timings: {timings}")
    print("\n".join(line for line in lines if "Linux version" in line or "bootsync-vm" in line))
    assert code == 0, f"QEMU did not power off by itself ({timings}):\n{console[-3000:]}"
    assert any(line.startswith("[    0.000000] Linux version ") for line in lines), console[:3000]
    assert BOOTED_MARKER in lines, console[-3000:]
    cmdline = next(line for line in lines if line.startswith("bootsync-vm: cmdline: "))
    assert f"root=squash:{rack_url}/images/{SNAPSHOT_DIR}/squashfs " in cmdline
    assert "initrd=boot-initrd ip=dhcp " in cmdline
    assert cmdline.endswith("console=ttyS0,115200n8")
