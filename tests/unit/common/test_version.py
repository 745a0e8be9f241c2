"""bootsync's version comes from pyproject.toml alone, through the package metadata."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from common.version import (
    PYPROJECT,
    UNKNOWN,
    VERSION,
    installed_version,
    source_tree_version,
    user_agent,
)

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("common", "simplestreams", "region", "rack")


def test_the_version_is_the_one_pyproject_declares() -> None:
    """The metadata (or, without it, the source tree) gives pyproject.toml's version."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert declared["project"]["version"] == VERSION
    assert PYPROJECT == REPO / "pyproject.toml"


def test_a_source_tree_without_metadata_reads_pyproject(tmp_path: Path) -> None:
    """The fallback reads ``project.version``; no file or no version gives None."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "bootsync"\nversion = "9.8.7"\n', encoding="utf-8")
    assert source_tree_version(pyproject) == "9.8.7"
    pyproject.write_text('[project]\nname = "bootsync"\n', encoding="utf-8")
    assert source_tree_version(pyproject) is None
    pyproject.write_text("[project\n", encoding="utf-8")
    assert source_tree_version(pyproject) is None
    assert source_tree_version(tmp_path / "absent.toml") is None
    assert re.fullmatch(r"0\+unknown", UNKNOWN)


def test_the_installed_version_is_read_from_the_dist_info_name(tmp_path: Path) -> None:
    """The first ``bootsync-<version>.dist-info`` on the path names it; others are skipped."""
    first, second = tmp_path / "a", tmp_path / "b"
    (first / "bootsync_extra-1.0.dist-info").mkdir(parents=True)
    (first / "other-2.0.dist-info").mkdir()
    (second / "bootsync-3.4.5.dist-info").mkdir(parents=True)
    assert installed_version([str(tmp_path / "absent"), str(first), str(second)]) == "3.4.5"
    assert installed_version([str(first)]) is None


def test_user_agents_carry_the_version() -> None:
    """``bootsync-rackd/<version>``."""
    assert user_agent("bootsync-rackd") == f"bootsync-rackd/{VERSION}"


def test_no_module_writes_a_version_of_its_own() -> None:
    """No string in the packages holds the version or a ``bootsync…/<digits>`` user agent."""
    version = re.compile(rf"(?<![\w.]){re.escape(VERSION)}(?![\w.])")
    agent = re.compile(r"bootsync[\w-]*/\d")
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    text = node.value
                    if version.search(text) or agent.search(text):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}: {text!r}")
    assert found == []
