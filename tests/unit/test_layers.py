"""The packages import only downwards: the layering the README's layout table draws.

simplestreams ← common ← region / rack, and inside the region
ui → api → services (images, rackhub) → db. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("simplestreams", "common", "region", "rack")

# module prefix → prefixes of project modules it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "simplestreams": ("common", "region", "rack"),
    "common": ("region", "rack"),
    "region": ("rack",),
    "rack": ("region",),
    "region.db": (
        "region.api",
        "region.images",
        "region.rackhub",
        "region.web",
        "region.app",
        "region.context",
        "region.main",
        "region.admin_cli",
        "region.ui",
    ),
    "region.images": (
        "region.api",
        "region.ui",
        "region.web",
        "region.app",
        "region.main",
        "region.admin_cli",
    ),
    "region.rackhub": (
        "region.api",
        "region.ui",
        "region.web",
        "region.app",
        "region.main",
        "region.images",
    ),
    "region.api": ("region.ui", "region.app", "region.main", "region.admin_cli"),
    "region.ui": ("region.app", "region.main", "region.admin_cli"),
}


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _banned(module: str, imported: str) -> bool:
    return any(
        _under(module, layer) and any(_under(imported, b) for b in prefixes)
        for layer, prefixes in FORBIDDEN.items()
    )


def _violations() -> list[str]:
    return sorted(
        f"{module} imports {imported}"
        for module, path in _modules()
        for imported in set(_imports(path))
        if _banned(module, imported)
    )


def test_no_module_imports_a_layer_above_its_own() -> None:
    """Every import in the project points down the layering (or sideways within a layer)."""
    assert _violations() == []


@pytest.mark.parametrize(
    ("module", "imported", "allowed"),
    [
        ("region.db.sources", "region.api.http", False),
        ("common.cli", "region.admin_cli", False),
        ("region.api.boot_sources", "region.db.sources", True),
        ("rack.pull", "common.transfer.download", True),
    ],
)
def test_layer_rules_tell_upward_from_downward_imports(
    module: str, imported: str, allowed: bool
) -> None:
    """The rule table bans an upward import and lets a downward one through."""
    assert _banned(module, imported) is not allowed
