"""The rack's TFTP server with real clients: curl, tftp-hpa's tftp and atftp (make tftp-clients).

The boot files come from a snapshot the rack pulled from a real region (bootloader
archives unpacked, bootx64.efi linked at the root); the server listens on a free
high UDP port of 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import shutil
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rack.app import open_rack
from rack.pull import run_pull
from rack.tftp.server import TftpServer, TftpSettings
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


async def test_twenty_concurrent_curl_transfers_all_complete(
    server: TftpServer, boot_resources: Path, tmp_path: Path
) -> None:
    """20 transfers at once, each byte-identical; none left running afterwards."""
    kernel = (boot_resources / "current" / KERNEL).read_bytes()
    results = await asyncio.gather(
        *(
            run(*client_argv("curl", server.port, KERNEL, f"k{n}", n % 2 == 0), cwd=tmp_path)
            for n in range(20)
        )
    )
    assert [code for code, _ in results] == [0] * 20, results
    for n in range(20):
        assert (tmp_path / f"k{n}").read_bytes() == kernel, n
    await eventually(lambda: server.stats.active == 0, "all transfers ended")
    assert (server.stats.files, server.stats.active) == (20, 0)
