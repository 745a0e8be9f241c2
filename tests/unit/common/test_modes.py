"""Private modes: what is tightened, to what, and what is left as the operator set it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from common.storage.modes import (
    PRIVATE_DIR_MODE,
    create_private_file,
    tighten_dir,
    tighten_file,
)

Events = list[MutableMapping[str, Any]]


@pytest.fixture
def umask_000() -> Iterator[None]:
    """The most permissive umask: new files would be 0666, directories 0777."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("before", "after"),
    [(0o644, 0o600), (0o666, 0o600), (0o604, 0o600), (0o660, 0o600), (0o755, 0o600)],
)
def test_a_secret_file_more_open_than_0640_becomes_0600_and_is_logged(
    tmp_path: Path, log_events: Events, before: int, after: int
) -> None:
    """Anything beyond owner read-write and group read is taken, and so is group read then."""
    path = tmp_path / "secret"
    path.write_text("s")
    path.chmod(before)
    assert tighten_file(path)
    assert mode(path) == after
    assert [(e["event"], e["was"], e["now"]) for e in log_events] == [
        ("data_dir_permissions_tightened", f"{before:04o}", f"{after:04o}")
    ]


@pytest.mark.parametrize("kept", [0o600, 0o640, 0o400, 0o440])
def test_a_secret_file_within_0640_is_left_alone_silently(
    tmp_path: Path, log_events: Events, kept: int
) -> None:
    """Group read alone is an operator's choice: kept, and nothing is logged."""
    path = tmp_path / "secret"
    path.write_text("s")
    path.chmod(kept)
    assert not tighten_file(path)
    assert mode(path) == kept
    assert log_events == []


def test_directories_keep_at_most_0750_or_0700_for_a_gpg_home(
    tmp_path: Path, log_events: Events
) -> None:
    """0755 → 0750 for a data dir, 0755 → 0700 for a gpg home, 0700 stays; missing is fine."""
    data, home, tight = tmp_path / "data", tmp_path / "gnupg", tmp_path / "tight"
    for path, initial in ((data, 0o755), (home, 0o755), (tight, 0o700)):
        path.mkdir()
        path.chmod(initial)
    assert tighten_dir(data)
    assert tighten_dir(home, most=PRIVATE_DIR_MODE)
    assert not tighten_dir(tight)
    assert not tighten_dir(tmp_path / "missing")
    assert (mode(data), mode(home), mode(tight)) == (0o750, 0o700, 0o700)
    assert len(log_events) == 2


@pytest.mark.usefixtures("umask_000")
def test_a_private_file_is_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    """Even under umask 0 the new file is 0600; an existing 0644 one is tightened, kept whole."""
    new = tmp_path / "new.db"
    assert create_private_file(new)
    assert (mode(new), new.read_bytes()) == (0o600, b"")
    old = tmp_path / "old.db"
    old.write_bytes(b"data")
    old.chmod(0o644)
    assert not create_private_file(old)
    assert (mode(old), old.read_bytes()) == (0o600, b"data")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may chmod any file")
def test_a_file_this_process_may_not_chmod_is_reported_not_raised(
    log_events: Events,
) -> None:
    """A file of another owner (here /etc/passwd, 0644) is logged as not tightened."""
    assert not tighten_file(Path("/etc/passwd"))
    assert [e["event"] for e in log_events] == ["data_dir_permissions_not_tightened"]
