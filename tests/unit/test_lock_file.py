"""requirements.lock pins what pyproject.toml asks for, and the venv holds exactly those pins."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "run `make lock` and commit requirements.lock"


def locked() -> dict[str, Version]:
    """Package name → the version requirements.lock pins."""
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{line}: the lock pins with =="
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def declared() -> list[Requirement]:
    """The project's dependencies and its test extra, as pyproject.toml states them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]
    ]


@pytest.mark.parametrize("requirement", declared(), ids=str)
def test_every_declared_dependency_is_pinned_within_its_range(requirement: Requirement) -> None:
    """Each dependency of pyproject.toml (and its test extra) has a lock pin its range allows."""
    if requirement.marker is not None and not requirement.marker.evaluate():
        pytest.skip(f"{requirement} does not apply here")
    pin = locked().get(canonicalize_name(requirement.name))
    assert pin is not None, f"{requirement.name} is not in requirements.lock: {REGENERATE}"
    assert pin in requirement.specifier, (
        f"requirements.lock pins {requirement.name}=={pin}, outside {requirement}: {REGENERATE}"
    )


def test_the_venv_holds_exactly_the_locked_versions() -> None:
    """Every pinned package is installed at its pinned version (``make setup`` installs the lock)."""
    wrong = {}
    for name, pin in locked().items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            wrong[name] = f"missing, locked {pin}"
            continue
        if installed != pin:
            wrong[name] = f"{installed} installed, locked {pin}"
    assert wrong == {}, f"the venv differs from requirements.lock: run `make setup` ({wrong})"
