"""Upstream sample streams for tests: one signing key per session, short temp dirs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from common.trust.keyrings import SigningKey


@contextmanager
def short_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory under /tmp with a short path (gpg-agent sockets must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def upstream_key() -> Iterator[SigningKey]:
    """The key that signs every sample stream of the session (so newer streams verify too)."""
    with (
        short_dir("bsk") as home,
        SigningKey.create(home / "g", name="upstream", email="up@test.invalid") as key,
    ):
        yield key
