"""The ``bootsync.commands`` entry points, found without importing importlib.metadata.

``importlib.metadata.entry_points()`` imports the email package and parses the
metadata of every installed distribution: 40 ms and more of ``bootsync --help``
(bench/RESULTS.md, "Start-up"). This reads only each distribution's
``entry_points.txt`` on ``sys.path``, as importlib.metadata does: the first
distribution of a name on the path wins, ``*.dist-info`` and ``*.egg-info`` alike.
tests/unit/cli/test_startup_imports.py checks both find the same entry points.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_META_SUFFIXES = (".dist-info", ".egg-info")
_SECTION = re.compile(r"\[\s*(?P<group>[^\]]+?)\s*\]")


@dataclass(frozen=True)
class EntryPoint:
    """One ``name = module:attr`` line of a group."""

    name: str
    value: str
    distribution: str

    def load(self) -> Callable[..., Any]:
        """Import the module and return the attribute the entry point names."""
        module, _, attr = self.value.partition(":")
        # __import__, not importlib.import_module: `python -X importtime` reports only
        # imports made through the import statement's path, and the start-up test
        # reads that report.
        __import__(module.strip())
        target: Any = sys.modules[module.strip()]
        for part in attr.strip().split("."):
            if part:
                target = getattr(target, part)
        return target  # type: ignore[no-any-return]


def entry_points(group: str, path: Sequence[str] | None = None) -> list[EntryPoint]:
    """The entry points of ``group`` of every distribution on ``path`` (``sys.path``)."""
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for directory, name in _distributions(sys.path if path is None else path):
        if name in seen:
            continue
        seen.add(name)
        try:
            text = (directory / "entry_points.txt").read_text(encoding="utf-8")
        except OSError:
            continue
        found.extend(EntryPoint(n, v, name) for n, v in _group_lines(text, group))
    return found


def _distributions(path: Sequence[str]) -> Iterator[tuple[Path, str]]:
    for entry in path:
        try:
            children = sorted(Path(entry or ".").iterdir())
        except OSError:  # a zip file, a missing directory
            continue
        for child in children:
            if child.name.endswith(_META_SUFFIXES):
                stem = child.name.rsplit(".", 1)[0].partition("-")[0]
                yield child, re.sub(r"[-_.]+", "_", stem).lower()


def _group_lines(text: str, group: str) -> Iterator[tuple[str, str]]:
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        section = _SECTION.fullmatch(line)
        if section:
            current = section["group"]
        elif current == group and "=" in line:
            name, _, value = line.partition("=")
            yield name.strip(), value.strip()
