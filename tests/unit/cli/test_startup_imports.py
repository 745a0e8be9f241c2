"""``bootsync --help`` stays cheap: registering commands imports no heavy library.

An API call (``bootsync PROFILE boot-resources read``, ``bootsync login``) stays
cheap too: it is sent with http.client, so aiohttp and the rest never load.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.cli import plugins
from common.cli.maascli_http import Credentials
from common.cli.maascli_profiles import Profile, ProfileStore
from tests.unit.cli.describe_sample import describe

REPO = Path(__file__).resolve().parents[3]
# Measured (bench/RESULTS.md, "Start-up"): each of these costs `bootsync --help`
# 10 to 80 ms, and no local command needs one until it runs. importlib.metadata
# scans every installed distribution (common/cli/plugins.py reads entry points
# without it); asyncio pulls in ssl and concurrent.futures.
HEAVY = (
    "aiohttp",
    "gnupg",
    "prometheus_client",
    "aiosqlite",
    "structlog",
    "asyncio",
    "importlib.metadata",
    "region.config",
    "region.db.connection",
)


# The ≤ 0.20 s budget of one API call (bench/RESULTS.md, "One API call"): aiohttp
# alone costs more (its connector builds SSL contexts at import), structlog ~0.2 s
# at load; an API call is one synchronous request and logs nothing.
HEAVY_FOR_API = (
    "aiohttp",
    "gnupg",
    "prometheus_client",
    "aiosqlite",
    "structlog",
    "asyncio",
    "simplestreams",
)
ServerFactory = Callable[..., Awaitable[TestServer]]


def _imported_by_help() -> list[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "common.cli", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.append(line.rsplit("|", 1)[1].strip())
    return names


def _importer_of(names: list[str], module: str) -> str:
    """The first module whose import (listed after its children) pulled ``module`` in."""
    position = names.index(module)
    for later in names[position + 1 :]:
        if later.startswith("common.") or later.startswith("region.") or later == "common":
            return later
    return "?"


def test_help_imports_no_heavy_module() -> None:
    """`python -m common.cli --help` imports none of the heavy libraries, naming any that leaks."""
    names = _imported_by_help()
    assert "region.admin_cli" in names, "the entry-point commands were not registered"
    leaked = [
        f"{module} (pulled in by {_importer_of(names, module)})"
        for module in HEAVY
        if module in names
    ]
    assert leaked == [], f"bootsync --help imported heavy modules: {', '.join(leaked)}"


def test_help_lists_the_entry_point_commands() -> None:
    """The region's commands, registered through the bootsync.commands entry point, are listed."""
    done = subprocess.run(
        [sys.executable, "-m", "common.cli", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for command in ("mirror", "login", "apikey", "createadmin", "rack-secret"):
        assert command in done.stdout


def test_plugins_find_what_importlib_metadata_finds() -> None:
    """The cheap entry-point reader finds the same bootsync.commands as importlib.metadata."""
    from importlib.metadata import entry_points  # noqa: PLC0415 - the reference, in the test only

    expected = sorted((e.name, e.value) for e in entry_points(group="bootsync.commands"))
    found = sorted((e.name, e.value) for e in plugins.entry_points("bootsync.commands"))
    assert found == expected
    assert ("region", "region.admin_cli:register") in found


def test_plugins_read_both_metadata_layouts(tmp_path: Path) -> None:
    """dist-info and egg-info entry points are read; the first distribution of a name wins."""
    first, second = tmp_path / "a", tmp_path / "b"
    for root, meta, value in (
        (first, "demo_pkg-1.0.dist-info", "one:register"),
        (second, "Demo.Pkg.egg-info", "two:register"),
        (second, "other-2.0.dist-info", "three:add"),
    ):
        (root / meta).mkdir(parents=True)
        (root / meta / "entry_points.txt").write_text(
            f"[console_scripts]\nx = y:z\n\n[bootsync.commands]\n# note\ncmd = {value}\n"
        )
    found = plugins.entry_points("bootsync.commands", [str(first), str(second), "/nowhere"])
    assert [(e.distribution, e.value) for e in found] == [
        ("demo_pkg", "one:register"),
        ("other", "three:add"),
    ]


def test_plugin_load_returns_the_named_attribute() -> None:
    """An entry point loads its module and returns the attribute after the colon."""
    point = plugins.EntryPoint("region", "region.admin_cli:register", "bootsync")
    from region import admin_cli  # noqa: PLC0415

    assert point.load() is admin_cli.register


@pytest.mark.parametrize("word", ["mirror", "sample-stream", "apikey"])
def test_command_help_stays_cheap(word: str) -> None:
    """`bootsync COMMAND --help` still registers only: no heavy module for a command's help."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "common.cli", word, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert [m for m in HEAVY if m in names] == []


def _import_rows(stderr: str) -> list[tuple[int, str]]:
    """(depth, module) of each ``-X importtime`` line; a module is listed after its imports."""
    rows = []
    for line in stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((len(parts[2]) - len(parts[2].lstrip()), parts[2].strip()))
    return rows


def _leaked(rows: list[tuple[int, str]], heavy: tuple[str, ...]) -> list[str]:
    """Each heavy module imported, with the chain of imports that pulled it in."""
    found = []
    for position, (own_depth, name) in enumerate(rows):
        if name not in heavy:
            continue
        chain, depth = [name], own_depth
        for later_depth, later in rows[position + 1 :]:
            if later_depth < depth:
                chain.append(later)
                depth = later_depth
        found.append(" <- ".join(chain))
    return found


async def _bootsync_importtime(*words: str, config: Path, stdin: bytes = b"") -> tuple[str, str]:
    """Run ``python -X importtime -m common.cli WORDS``: (stdout, stderr); fails unless exit 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "common.cli",
        *words,
        cwd=REPO,
        env={**os.environ, "XDG_CONFIG_HOME": str(config)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode(), err.decode()


@pytest.fixture
async def region(aiohttp_server: ServerFactory) -> TestServer:
    """A real aiohttp server answering describe, whoami and boot-resources read."""
    resources = [{"id": 1, "type": "Synced", "name": "ubuntu/noble", "architecture": "amd64/ga"}]

    async def described(request: web.Request) -> web.Response:
        return web.json_response(describe(request.host))

    async def whoami(_request: web.Request) -> web.Response:
        return web.json_response({"username": "admin", "is_superuser": True})

    async def boot_resources(_request: web.Request) -> web.Response:
        return web.json_response(resources)

    app = web.Application()
    app.router.add_get("/MAAS/api/2.0/describe/", described)
    app.router.add_get("/MAAS/api/2.0/users/", whoami)
    app.router.add_get("/MAAS/api/2.0/boot-resources/", boot_resources)
    return await aiohttp_server(app)


async def test_an_api_call_imports_no_heavy_module(region: TestServer, tmp_path: Path) -> None:
    """`bootsync PROFILE boot-resources read` answers without aiohttp, gnupg, prometheus_client."""
    config = tmp_path / "config"
    profile = Profile(
        name="admin",
        url=str(region.make_url("/MAAS/api/2.0/")),
        credentials=Credentials.parse("ck:tk:ts"),
        description=describe(f"127.0.0.1:{region.port}"),
    )
    await asyncio.to_thread(ProfileStore(config / "bootsync" / "profiles.json").save, profile)
    out, err = await _bootsync_importtime("admin", "boot-resources", "read", config=config)
    assert json.loads(out)[0]["name"] == "ubuntu/noble"
    rows = _import_rows(err)
    assert "common.cli.maascli_http" in [name for _, name in rows]
    leaked = _leaked(rows, HEAVY_FOR_API)
    assert leaked == [], f"an API call imported heavy modules: {'; '.join(leaked)}"


async def test_login_imports_no_heavy_module(region: TestServer, tmp_path: Path) -> None:
    """`bootsync login` checks the key and fetches describe without aiohttp or structlog."""
    config = tmp_path / "config"
    url = str(region.make_url("/MAAS/"))
    out, err = await _bootsync_importtime(
        "login", "admin", url, "-", config=config, stdin=b"ck:tk:ts\n"
    )
    assert "You are now logged in" in out
    leaked = _leaked(_import_rows(err), HEAVY_FOR_API)
    assert leaked == [], f"bootsync login imported heavy modules: {'; '.join(leaked)}"
