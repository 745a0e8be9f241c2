"""bootsync's version: the one ``pyproject.toml`` declares, read from the package metadata.

An installed bootsync (even an editable install) has metadata; a source tree
run without installing has none, and the version is read from the
``pyproject.toml`` beside the packages instead. Both read files, once, at import.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "bootsync"
UNKNOWN = "0+unknown"
"""The version when neither the metadata nor a ``pyproject.toml`` says one (PEP 440)."""
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def installed_version() -> str | None:
    """The version of the installed ``bootsync`` distribution, or None without one."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def source_tree_version(pyproject: Path = PYPROJECT) -> str | None:
    """``project.version`` of ``pyproject`` (blocking), or None if it cannot be read."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    project = data.get("project")
    version = project.get("version") if isinstance(project, dict) else None
    return version if isinstance(version, str) else None


VERSION = installed_version() or source_tree_version() or UNKNOWN
"""bootsync's version, as pyproject.toml declares it."""


def user_agent(program: str) -> str:
    """The User-Agent ``program`` sends: ``<program>/<version>``."""
    return f"{program}/{VERSION}"
