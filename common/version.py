"""bootsync's version: the one ``pyproject.toml`` declares, read from the package metadata.

An installed bootsync (even an editable install) has a ``bootsync-<version>.dist-info``
directory on ``sys.path``, whose name says the version (read without importing
:mod:`importlib.metadata`, which costs a CLI call more than its HTTP request); a
source tree run without installing has none, and the version is read from the
``pyproject.toml`` beside the packages instead. Both read once, at import.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

DISTRIBUTION = "bootsync"
UNKNOWN = "0+unknown"
"""The version when neither the metadata nor a ``pyproject.toml`` says one (PEP 440)."""
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


_DIST_INFO = re.compile(rf"^{DISTRIBUTION}-([^-]+)\.dist-info$", re.IGNORECASE)


def installed_version(path: Iterable[str] | None = None) -> str | None:
    """The version of the first ``bootsync`` distribution on ``path`` (``sys.path``), or None."""
    for entry in sys.path if path is None else path:
        try:
            names = [e.name for e in os.scandir(entry or ".") if e.is_dir()]
        except OSError:
            continue
        for name in names:
            if match := _DIST_INFO.match(name):
                return match.group(1)
    return None


def source_tree_version(pyproject: Path = PYPROJECT) -> str | None:
    """``project.version`` of ``pyproject`` (blocking), or None if it cannot be read."""
    import tomllib  # noqa: PLC0415 - only a source tree without metadata needs it

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
