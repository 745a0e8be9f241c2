"""The ``vm`` marker: tests that boot a QEMU machine from a running rack (tests/vm/)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``vm`` marker (``-m vm`` runs these alone, ``-m 'not vm'`` skips them)."""
    config.addinivalue_line(
        "markers", "vm: boots a QEMU machine from a real rack (make vm-test; make vm-tools)"
    )
