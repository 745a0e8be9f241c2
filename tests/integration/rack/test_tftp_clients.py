"""The rack's TFTP server with real clients: curl, tftp-hpa's tftp and atftp (make tftp-clients).

The boot files come from a snapshot the rack pulled from a real region (bootloader
archives unpacked, bootx64.efi linked at the root); the server listens on a free
high UDP port of 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rack.app import open_rack
from rack.pull import run_pull
from rack.tftp.server import TftpServer, TftpSettings
from tests.fakes.daemons import DaemonProcess, free_port
from tests.fakes.region import FakeRegion
from tests.fakes.waiting import eventually
from tests.integration.rack.harness import rack_config

FILE_SIZE = 200_000  # the kernel: a few hundred blocks of 512 bytes
KERNEL = "ubuntu/amd64/ga-24.04/noble/stable/boot-kernel"
CLIENTS = ("curl", "tftp", "atftp")
MISSING = [c for c in CLIENTS if shutil.which(c) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"{', '.join(MISSING)} missing: run `make tftp-clients`"
)


@pytest.fixture
async def boot_resources(fake_region: FakeRegion, tmp_path: Path) -> Path:
    """boot-resources/ of a rack after one pull from the region."""
    data = tmp_path / "rack"
    async with open_rack(rack_config(fake_region, data)) as rack:
        await rack.link.register_once()
        result = await run_pull(rack.pull, reason="test")
    assert result.outcome == "ok", result.error
    return data / "boot-resources"


@pytest.fixture
async def server(boot_resources: Path) -> AsyncIterator[TftpServer]:
    """A TFTP server of ``boot_resources`` on a free UDP port of 127.0.0.1."""
    tftp = TftpServer(boot_resources, TftpSettings(host="127.0.0.1", port=0, timeout_s=0.5))
    await tftp.start()
    try:
        yield tftp
    finally:
        await tftp.stop()


async def run(*argv: str, cwd: Path) -> tuple[int, str]:
    """Run a client; its exit status and its output (stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def client_argv(client: str, port: int, name: str, out: str, options: bool) -> list[str]:
    """The command that fetches ``name`` into ``out`` with ``client``, with or without options."""
    if client == "curl":
        extra = ["--tftp-blksize", "1468"] if options else ["--tftp-no-options"]
        return ["curl", "-sS", *extra, "-o", out, f"tftp://127.0.0.1:{port}/{name}"]
    if client == "tftp":  # tftp-hpa's client sends no options
        return ["tftp", "-m", "binary", "127.0.0.1", str(port), "-c", "get", name, out]
    extra = (
        ["--option", "blksize 1468", "--option", "tsize 0", "--option", "windowsize 8"]
        if options
        else []
    )
    return ["atftp", *extra, "-g", "-r", name, "-l", out, "127.0.0.1", str(port)]


@pytest.mark.parametrize(
    ("client", "options"),
    [("curl", False), ("curl", True), ("tftp", False), ("atftp", False), ("atftp", True)],
)
async def test_real_clients_fetch_a_bootloader_and_a_kernel_byte_identical(
    server: TftpServer, boot_resources: Path, tmp_path: Path, client: str, options: bool
) -> None:
    """curl, tftp-hpa and atftp get bootx64.efi (unpacked from shim-signed.tar.xz) and a kernel
    exactly, with and without blksize/tsize/windowsize, names with a leading '/' too."""
    current = boot_resources / "current"
    with tarfile.open(current / "bootloader/uefi/amd64/shim-signed.tar.xz") as tar:
        member = tar.extractfile("bootx64.efi")
        assert member is not None
        shipped = member.read()
    for name, expected in (
        ("bootx64.efi", shipped),
        (f"/{KERNEL}", (current / KERNEL).read_bytes()),
    ):
        out = tmp_path / f"{client}-{name.replace('/', '_')}"
        code, output = await run(
            *client_argv(client, server.port, name, str(out), options), cwd=tmp_path
        )
        assert code == 0, output
        assert out.read_bytes() == expected, (client, name)
    await eventually(lambda: server.stats.active == 0, "both transfers ended")
    assert server.stats.files == 2
    assert server.stats.bytes == len(shipped) + (current / KERNEL).stat().st_size
    assert server.stats.active == 0


async def test_writes_and_escapes_are_refused_by_every_client(
    server: TftpServer, boot_resources: Path, tmp_path: Path
) -> None:
    """A put is refused (access violation), so are '../' and a symlink leading out of the
    snapshot; nothing is written on the rack."""
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"x" * 1000)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    current = boot_resources / "current"
    (current.resolve() / "evil").symlink_to(outside)
    port = str(server.port)
    code, output = await run(
        "atftp", "-p", "-l", "upload.bin", "-r", "upload.bin", "127.0.0.1", port, cwd=tmp_path
    )
    assert code != 0
    assert "only sends files" in output, output
    _, output = await run(
        "tftp", "-m", "binary", "127.0.0.1", port, "-c", "put", "upload.bin", cwd=tmp_path
    )
    assert "Error code 2" in output, output
    code, _ = await run(
        "curl", "-sS", "-T", "upload.bin", f"tftp://127.0.0.1:{port}/u", cwd=tmp_path
    )
    assert code != 0
    assert not (current / "upload.bin").exists()
    assert not (current / "u").exists()
    for name in ("../../outside.txt", "evil"):
        _, output = await run(
            "tftp", "-m", "binary", "127.0.0.1", port, "-c", "get", name, "got", cwd=tmp_path
        )
        assert "Error code 2" in output, (name, output)
        code, output = await run(
            "curl", "-sS", "--path-as-is", "-o", "got2", f"tftp://127.0.0.1:{port}/{name}",
            cwd=tmp_path,
        )  # fmt: skip
        assert code != 0, output
        assert not (tmp_path / "got2").exists() or b"secret" not in (tmp_path / "got2").read_bytes()
    assert server.stats.errors["write_refused"] == 3
    assert server.stats.errors["access"] == 4
    assert server.stats.files == 0


CONCURRENT = 100


def free_udp_port() -> int:
    """A UDP port of 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def rackd(
    fake_region: FakeRegion, tmp_path: Path
) -> AsyncIterator[tuple[DaemonProcess, int]]:
    """bootsync-rackd (a real process) after its first pull, and its TFTP server's UDP port."""
    tftp_port = free_udp_port()
    secret = tmp_path / "rack-secret"
    secret.write_text(fake_region.secret + "\n")
    config = tmp_path / "rackd.toml"
    config.write_text(
        f'[log]\nformat = "json"\n[server]\nhostname = "tftp-rack"\n'
        f'[tftp]\nlisten = "127.0.0.1:{tftp_port}"\n'
    )
    port = free_port()
    rack = DaemonProcess(
        "rack",
        [
            "--config", str(config),
            "--region", fake_region.url,
            "--secret-file", str(secret),
            "--data-dir", str(tmp_path / "rackd"),
            "--listen", f"127.0.0.1:{port}",
        ],
        log_path=tmp_path / "rackd.log",
        port=port,
    )  # fmt: skip
    await rack.start(ready_path="/livez")
    try:
        summary = (await rack.wait_for_event("pull_finished"))[0]
        assert summary["outcome"] == "ok", summary
        yield rack, tftp_port
    finally:
        await rack.stop()


async def tftp_samples(rack: DaemonProcess) -> dict[str, float]:
    """The rack's bootsync_tftp_* samples from its /metrics (name{labels} -> value)."""
    async with aiohttp.ClientSession() as session, session.get(f"{rack.url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("bootsync_tftp_")
    }


@pytest.mark.slow
async def test_a_hundred_concurrent_transfers_from_the_rack_daemon_are_byte_identical(
    rackd: tuple[DaemonProcess, int], tmp_path: Path
) -> None:
    """bootsync-rackd's TFTP server sends 100 transfers at once without windowsize (curl, half
    asking blksize 1468), then 100 with windowsize 8 (atftp), every copy byte-identical;
    /metrics then counts 200 files, no error, none running and no retransmission storm
    (at most 1 % of the packets sent again)."""
    rack, port = rackd
    kernel = (tmp_path / "rackd" / "boot-resources" / "current" / KERNEL).read_bytes()
    for client in ("curl", "atftp"):
        outs = [tmp_path / f"{client}{n}" for n in range(CONCURRENT)]
        argvs = [
            client_argv(client, port, KERNEL, str(out), options=n % 2 == 0 or client == "atftp")
            for n, out in enumerate(outs)
        ]
        results = await asyncio.gather(*(run(*argv, cwd=tmp_path) for argv in argvs))
        assert [code for code, _ in results] == [0] * CONCURRENT, (client, results)
        if client == "atftp":  # each one was granted its window
            assert all("windowsize = 8" in output for _, output in results), results[0]
        for out in outs:
            assert out.read_bytes() == kernel, out
    await eventually(lambda: _active_is_zero(rack), "every transfer ended", timeout=10)
    samples = await tftp_samples(rack)
    assert samples["bootsync_tftp_files_total"] == 2 * CONCURRENT, samples
    assert samples["bootsync_tftp_bytes_total"] == 2 * CONCURRENT * len(kernel), samples
    assert not any(name.startswith("bootsync_tftp_errors") for name in samples), samples
    fewest_packets = 2 * CONCURRENT * (len(kernel) // 1468 + 1)
    assert samples["bootsync_tftp_retransmits_total"] <= 0.01 * fewest_packets, samples


async def _active_is_zero(rack: DaemonProcess) -> bool:
    """True when the rack's /metrics shows no TFTP transfer running."""
    return (await tftp_samples(rack))["bootsync_tftp_active_sessions"] == 0
