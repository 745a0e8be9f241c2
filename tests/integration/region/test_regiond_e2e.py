"""bootsync-regiond as a real process on 127.0.0.1, importing from a fake upstream."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.mirror.samplestream import SampleStream
from common.trust.keyrings import aload_keyring
from common.trust.signing import averify_clearsigned
from simplestreams import flatten, parse_index, parse_products
from tests.fakes.daemons import REPO, DaemonProcess, admin_key, oauth, region_daemon
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually

API = "/MAAS/api/2.0"
STREAM = "/MAAS/images-stream"
SQUASHFS = "noble/amd64/20250718/squashfs"
FILE_SIZE = 256 << 10

pytestmark = pytest.mark.slow


def region_process(
    upstream: FakeUpstream, stream: SampleStream, data_dir: Path, tmp_path: Path
) -> DaemonProcess:
    """The region daemon (not started) whose default source is ``stream`` on ``upstream``."""
    return region_daemon(tmp_path, data_dir, upstream=upstream, stream=stream)


@pytest.fixture
async def region(
    fake_upstream: FakeUpstream, stream: SampleStream, data_dir: Path, tmp_path: Path
) -> AsyncIterator[DaemonProcess]:
    """bootsync-regiond started on 127.0.0.1, importing ``stream`` from the fake upstream."""
    fake_upstream.serve_directory(stream.root)
    daemon = region_process(fake_upstream, stream, data_dir, tmp_path)
    await daemon.start()
    yield daemon
    await daemon.stop()


async def api(
    daemon: DaemonProcess, key: str, method: str, path: str, **kw: Any
) -> tuple[int, Any]:
    """An API call signed with ``key``: the status and the JSON (or text) body."""
    async with (
        aiohttp.ClientSession(headers=oauth(key)) as s,
        s.request(method, daemon.url + API + path, **kw) as resp,
    ):
        body: Any = await (resp.json() if resp.content_type == "application/json" else resp.text())
        return resp.status, body


async def wait_idle(daemon: DaemonProcess, key: str, imports: int) -> dict[str, Any]:
    """Wait for the ``imports``-th import_finished event and for is_importing to be false."""
    events = await daemon.wait_for_event("import_finished", count=imports, timeout=90)

    async def idle() -> bool:
        status, importing = await api(daemon, key, "GET", "/boot-resources/?op=is_importing")
        return status == 200 and importing is False

    await eventually(idle, "is_importing to answer false", pause=0.1)
    return events[imports - 1]


async def published(daemon: DaemonProcess) -> dict[str, str]:
    """path → sha256 of every file the region's signed stream lists, verified."""
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{daemon.url}{STREAM}/region-keyring.gpg") as resp:
            keyring = await aload_keyring(await resp.read())
        async with s.get(f"{daemon.url}{STREAM}/streams/v1/index.sjson") as resp:
            index = parse_index((await averify_clearsigned(await resp.read(), keyring)).payload)
        files: dict[str, str] = {}
        for entry in index.entries.values():
            assert entry.path is not None
            async with s.get(f"{daemon.url}{STREAM}/{entry.path}") as resp:
                doc = await averify_clearsigned(await resp.read(), keyring)
            files |= {
                i.path: i.sha256
                for i in flatten(parse_products(doc.payload))
                if i.path and i.sha256
            }
        return files


async def test_region_imports_at_start_and_publishes_a_signed_stream_of_what_it_holds(
    region: DaemonProcess, data_dir: Path
) -> None:
    """The start-up import fetches noble/amd64 and bootloaders; every listed file is served."""
    key = await admin_key(data_dir)
    summary = await wait_idle(region, key, 1)
    assert summary["outcome"] == "ok"
    files = await published(region)
    assert any(p.endswith("/squashfs") for p in files)
    async with aiohttp.ClientSession() as s:
        for path, sha in files.items():
            async with s.get(f"{region.url}{STREAM}/{path}") as resp:
                assert hashlib.sha256(await resp.read()).hexdigest() == sha
    status, resources = await api(region, key, "GET", "/boot-resources/")
    assert status == 200
    assert {r["name"] for r in resources} >= {"ubuntu/noble", "grub-efi-signed/uefi"}


async def test_second_import_of_the_same_stream_fetches_no_file(
    region: DaemonProcess, fake_upstream: FakeUpstream, data_dir: Path
) -> None:
    """op=import against an unchanged upstream reads metadata only."""
    key = await admin_key(data_dir)
    await wait_idle(region, key, 1)
    before = [r for r in fake_upstream.requests if not r.path.startswith("/streams/")]
    status, text = await api(region, key, "POST", "/boot-resources/?op=import")
    assert (status, text) == (200, "Import of boot resources started")
    summary = await wait_idle(region, key, 2)
    after = [r for r in fake_upstream.requests if not r.path.startswith("/streams/")]
    assert after == before
    assert summary["files_fetched"] == 0


async def test_restart_mid_import_completes_without_refetching_finished_files(
    fake_upstream: FakeUpstream, stream: SampleStream, data_dir: Path, tmp_path: Path
) -> None:
    """kill -9 while one file stalls; after a restart only that file is fetched again."""
    fake_upstream.serve_directory(stream.root)
    fake_upstream.stall(SQUASHFS, after_bytes=FILE_SIZE // 2, seconds=120, times=1)
    first = region_process(fake_upstream, stream, data_dir, tmp_path)
    await first.start()
    started = await first.wait_for_event("downloads_started")
    await first.wait_for_event("download_finished", count=started[0]["files"] - 1)
    await first.stop(signal.SIGKILL)
    finished = {e["url"] for e in first.events("download_finished")}
    assert not any(u.endswith(SQUASHFS) for u in finished)

    second = region_process(fake_upstream, stream, data_dir, tmp_path)
    await second.start()
    key = await admin_key(data_dir)
    summary = await wait_idle(second, key, 1)
    await second.stop()
    assert summary["outcome"] == "ok"
    for url in finished:
        path = url.split("/", 3)[3]
        assert len(fake_upstream.requests_for(path)) == 1, path
    assert len(fake_upstream.requests_for(SQUASHFS)) == 2


async def test_corrupt_upstream_file_is_refused_while_the_old_set_keeps_being_served(
    region: DaemonProcess, fake_upstream: FakeUpstream, newer_stream: SampleStream, data_dir: Path
) -> None:
    """A newer version whose squashfs never verifies fails; the stream still serves the old."""
    key = await admin_key(data_dir)
    await wait_idle(region, key, 1)
    old = await published(region)
    fake_upstream.serve_directory(newer_stream.root)
    fake_upstream.flip_byte("noble/amd64/20250815/squashfs", offset=10, times=1000)
    await api(region, key, "POST", "/boot-resources/?op=import")
    summary = await wait_idle(region, key, 2)
    assert summary["outcome"] != "ok"
    assert any("sha256" in e for e in summary["errors"])
    now = await published(region)
    assert not any("20250815/squashfs" in p for p in now)
    assert {p: s for p, s in now.items() if "noble/amd64" in p and "squashfs" in p} == {
        p: s for p, s in old.items() if "noble/amd64" in p and "squashfs" in p
    }


async def test_canonical_sstream_mirror_mirrors_the_region_stream_with_its_keyring(
    region: DaemonProcess, data_dir: Path, tmp_path: Path
) -> None:
    """sstream-mirror --keyring region-keyring.gpg copies and verifies every published file."""
    key = await admin_key(data_dir)
    await wait_idle(region, key, 1)
    files = await published(region)
    keyring = tmp_path / "region-keyring.gpg"
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{region.url}{STREAM}/region-keyring.gpg") as resp,
    ):
        keyring.write_bytes(await resp.read())
    sstream = Path(os.environ.get("SSTREAM_BIN", REPO / ".venv-simplestreams" / "bin"))
    if not (sstream / "sstream-mirror").exists():
        pytest.fail(f"python-simplestreams is not installed at {sstream}: run `make setup`")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    proc = await asyncio.create_subprocess_exec(
        str(sstream / "sstream-mirror"),
        f"--keyring={keyring}",
        f"{region.url}{STREAM}/",
        str(tmp_path / "copy"),
        env={**os.environ, "GNUPGHOME": str(home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    for path, sha in files.items():
        assert hashlib.sha256((tmp_path / "copy" / path).read_bytes()).hexdigest() == sha
