"""python-libmaas, unmodified, against a real bootsync-regiond process.

libmaas lives in its own venv (``make setup`` builds ``.venv-libmaas``; its
aiohttp, pymongo, macaroonbakery and ``maas`` script would clash with ours), so
tests/integration/libmaas_driver.py runs there as a subprocess and prints what
libmaas saw as JSON. The region imports from a fake upstream in this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.mirror.samplestream import SampleStream
from region.images.publish import PRODUCTS_PATH
from tests.fakes.daemons import (
    REPO,
    DaemonProcess,
    admin_key,
    bootsync,
    free_port,
    region_daemon,
)
from tests.fakes.upstream import FakeUpstream

DRIVER = Path(__file__).with_name("libmaas_driver.py")
LIBMAAS_PYTHON = Path(os.environ.get("LIBMAAS_PYTHON", REPO / ".venv-libmaas" / "bin" / "python"))
UPLOAD_SHA = hashlib.sha256(bytes(range(251)) * ((9 << 20) // 251)).hexdigest()
FILE_SIZE = 32 << 10  # of the large files of the integration ``stream``

pytestmark = pytest.mark.slow


@pytest.fixture
async def region(
    fake_upstream: FakeUpstream, stream: SampleStream, data_dir: Path, tmp_path: Path
) -> AsyncIterator[DaemonProcess]:
    """bootsync-regiond on 127.0.0.1 with no boot source yet (libmaas creates it)."""
    fake_upstream.serve_directory(stream.root)
    daemon = region_daemon(tmp_path, data_dir)
    await daemon.start()
    yield daemon
    await daemon.stop()


async def run_driver(*args: str) -> dict[str, Any]:
    """Run the libmaas driver with ``args``; its JSON output."""
    if not LIBMAAS_PYTHON.exists():
        pytest.fail(f"python-libmaas is not installed at {LIBMAAS_PYTHON}: run `make setup`")
    proc = await asyncio.create_subprocess_exec(
        str(LIBMAAS_PYTHON),
        str(DRIVER),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=150)
    assert proc.returncode == 0, err.decode()[-4000:]
    result: dict[str, Any] = json.loads(out)
    return result


async def published_products(region: DaemonProcess) -> dict[str, Any]:
    """The products of the region's current stream."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{region.url}/MAAS/images-stream/{PRODUCTS_PATH}") as resp,
    ):
        assert resp.status == 200
        doc: dict[str, Any] = json.loads(await resp.read())
    products: dict[str, Any] = doc["products"]
    return products


async def test_python_libmaas_manages_sources_selections_imports_and_uploads(
    region: DaemonProcess, fake_upstream: FakeUpstream, stream: SampleStream, data_dir: Path
) -> None:
    """connect, sources, selections, import, resources and chunked uploads work; racks get them."""
    key = await admin_key(data_dir)
    source_url = fake_upstream.url("/")
    other_url = source_url.replace("127.0.0.1", "localhost")
    out = await run_driver(f"{region.url}/MAAS/", key, source_url, other_url, str(stream.keyring))

    assert out["version"]["version_info"][:2] == [3, 4]
    assert out["whoami"] == "admin"
    assert out["sources_before"] == []
    assert out["created_source"]["url"] == source_url
    assert out["created_source"]["keyring_filename"] == str(stream.keyring)
    assert out["updated_source_url"] == other_url
    assert out["created_selection"] == {
        "id": 1,
        "os": "ubuntu",
        "release": "noble",
        "arches": ["amd64"],
        "labels": ["*"],
    }
    assert out["selections"] == [["ubuntu", "noble"]]
    assert out["updated_selection_labels"] == ["stable"]

    assert out["start_import"] == "Import of boot resources started"
    assert out["is_importing_seen"][-1] is False
    synced = {(r["name"], r["type"]) for r in out["resources"]}
    assert ("ubuntu/noble", "Synced") in synced
    assert all(s["complete"] for s in out["noble_sets"].values())

    uploaded = out["uploaded"]
    assert (uploaded["type"], uploaded["name"], uploaded["architecture"]) == (
        "Uploaded",
        "from-libmaas",
        "amd64/generic",
    )
    (only,) = uploaded["sets"].values()
    assert only["complete"] is True
    assert only["files"] == {
        "root-tgz": {
            "filetype": "root-tgz",
            "sha256": UPLOAD_SHA,
            "size": uploaded["size"],
            "complete": True,
        }
    }
    assert uploaded["progress_calls"] == 3
    chunks = region.events("upload_chunk_received")  # the second upload sends none
    assert [e["bytes"] for e in chunks] == [4 << 20, 4 << 20, uploaded["size"] - (8 << 20)]
    assert out["deduplicated"]["progress_calls"] == 0
    assert all(s["complete"] for s in out["deduplicated"]["sets"].values())

    assert out["stop_import"] == "Import of boot resources is being stopped"
    assert out["commissioning"] == "noble"  # set by the import: the newest LTS it held
    assert out["default_release"] == ["ubuntu", "noble"]
    assert out["maas_name"] == "libmaas-region"
    assert out["selection_delete"] == {
        "status": 400,
        "content": "Unable to delete ubuntu noble. "
        "It is the operating system used in ephemeral environments.",
    }
    assert out["selections_after_delete"] == 1  # it goes with its source below
    assert "from-libmaas" not in out["resources_after_delete"]
    assert "again" in out["resources_after_delete"]
    assert out["sources_after_delete"] == []

    custom = (await published_products(region))["maas:boot:custom:amd64:generic:again"]
    (version,) = custom["versions"].values()
    assert version["items"]["root-tgz"]["sha256"] == UPLOAD_SHA
    assert custom["label"] == "uploaded"


def os_release() -> dict[str, str]:
    """This host's /etc/os-release as a dict, quotes stripped."""
    pairs = (line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines())
    return {key: value.strip("\"'") for key, value in (p for p in pairs if len(p) == 2)}


async def test_python_libmaas_reads_rack_controllers_with_the_racks_own_host_facts(
    region: DaemonProcess, data_dir: Path, tmp_path: Path
) -> None:
    """A real rack registers; libmaas reads its arch, cpus, memory, OS, power, zone, interfaces."""
    secret_file = tmp_path / "rack-secret"
    secret_file.write_text(await bootsync("rack-secret", "--data-dir", str(data_dir)) + "\n")
    rack_port = free_port()
    (tmp_path / "rackd.toml").write_text('[server]\nhostname = "rack-l"\n[log]\nformat = "json"\n')
    rack = DaemonProcess(
        "rack",
        [
            "--config",
            str(tmp_path / "rackd.toml"),
            "--region",
            region.url,
            "--secret-file",
            str(secret_file),
            "--listen",
            f"127.0.0.1:{rack_port}",
            "--data-dir",
            str(tmp_path / "rack-data"),
        ],
        log_path=tmp_path / "rackd.log",
        port=rack_port,
    )
    await rack.start(ready_path="/livez")
    try:
        await rack.wait_for_event("rack_registered")
        key = await admin_key(data_dir)
        (seen,) = (await run_driver("racks", f"{region.url}/MAAS/", key))["racks"]
    finally:
        await rack.stop()

    machine = platform.machine()
    debian = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64el"}.get(machine, machine)
    meminfo = Path("/proc/meminfo").read_text().split()
    release = os_release()
    net = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo")
    assert seen["hostname"] == "rack-l"
    assert seen["fqdn"] == "rack-l.maas"
    assert seen["architecture"] == f"{debian}/generic"
    assert seen["cpus"] == os.cpu_count()
    assert seen["memory"] == int(meminfo[meminfo.index("MemTotal:") + 1]) // 1024
    assert seen["osystem"] == release["ID"]
    assert seen["distro_series"] == release.get("VERSION_CODENAME", "")
    assert (seen["power_state"], seen["power_type"]) == ("unknown", "manual")
    assert (seen["zone"], seen["domain"], seen["node_type"]) == (
        "default",
        "maas",
        "RACK_CONTROLLER",
    )
    assert sorted(seen["interfaces"]) == net
    for name, interface in seen["interfaces"].items():
        mac = (Path("/sys/class/net") / name / "address").read_text().strip()
        assert interface["mac_address"] == mac
