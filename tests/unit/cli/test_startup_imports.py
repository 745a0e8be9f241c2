"""``bootsync --help`` stays cheap: registering commands imports no heavy library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.cli import plugins

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
