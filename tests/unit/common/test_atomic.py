"""The one crash-safe file writer, on a real filesystem."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.storage.atomic import commit_file, fsync_dir, write_atomic, write_if_changed

OLD = b"old content\n" * 100
NEW = b"new content, longer than the old one\n" * 1000


@pytest.fixture
def umask_077() -> Iterator[None]:
    """A umask that would strip group and other bits from new files."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def leftovers(directory: Path, keep: set[str]) -> list[str]:
    """Names in ``directory`` other than ``keep`` (temp files left behind)."""
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def test_a_new_file_appears_with_its_data_and_parents(tmp_path: Path) -> None:
    """A missing parent directory is created and the file holds exactly the data."""
    target = tmp_path / "a" / "b" / "file.bin"
    write_atomic(target, NEW)
    assert target.read_bytes() == NEW
    assert leftovers(target.parent, {"file.bin"}) == []


def test_an_existing_file_is_replaced_whole_not_rewritten_in_place(tmp_path: Path) -> None:
    """A reader holding the old file still reads all of it; the path gives all of the new one."""
    target = tmp_path / "file.bin"
    target.write_bytes(OLD)
    with target.open("rb") as reader:
        write_atomic(target, NEW)
        assert reader.read() == OLD
    assert target.read_bytes() == NEW
    assert leftovers(tmp_path, {"file.bin"}) == []


def test_mode_is_set_exactly_whatever_the_umask(tmp_path: Path, umask_077: None) -> None:
    """mode=0o644 gives 0644 under umask 077, and 0o600 gives 0600 when replacing a 0644 file."""
    target = tmp_path / "file"
    write_atomic(target, OLD, mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    write_atomic(target, NEW, mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_without_a_mode_the_umask_decides(tmp_path: Path, umask_077: None) -> None:
    """No mode: the new file gets 0666 less the umask."""
    target = tmp_path / "file"
    write_atomic(target, OLD)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    """Writing past a file-size limit fails: the old file is intact and the temp file is gone."""
    target = tmp_path / "file.bin"
    target.write_bytes(OLD)
    script = textwrap.dedent(
        """
        import resource, signal, sys
        from pathlib import Path
        from common.storage.atomic import write_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_atomic(Path(sys.argv[1]), b"x" * 65536)
        except OSError as exc:
            print(type(exc).__name__, exc.errno)
        """
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["OSError", "27"]  # EFBIG
    assert target.read_bytes() == OLD
    assert leftovers(tmp_path, {"file.bin"}) == []


def test_a_rename_that_fails_removes_the_temp_file(tmp_path: Path) -> None:
    """A directory in the way makes the final rename fail: it stays, and no temp is left."""
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        write_atomic(target, NEW)
    assert target.is_dir()
    assert leftovers(tmp_path, {"taken"}) == []


def test_exclusive_keeps_the_first_file_and_raises(tmp_path: Path) -> None:
    """exclusive=True on an existing path raises FileExistsError and leaves it and no temp."""
    target = tmp_path / "secret"
    write_atomic(target, OLD, mode=0o600, exclusive=True)
    with pytest.raises(FileExistsError):
        write_atomic(target, NEW, mode=0o600, exclusive=True)
    assert target.read_bytes() == OLD
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert leftovers(tmp_path, {"secret"}) == []


def test_write_if_changed_leaves_identical_content_alone(tmp_path: Path) -> None:
    """Same bytes: False and the very same file; other bytes: True and the new content."""
    target = tmp_path / "keyring.gpg"
    assert write_if_changed(target, OLD) is True
    before = target.stat()
    assert write_if_changed(target, OLD) is False
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert write_if_changed(target, NEW) is True
    assert target.read_bytes() == NEW


def test_commit_file_moves_a_finished_file_into_a_new_directory(tmp_path: Path) -> None:
    """The temp file becomes the target (same inode), in a directory created for it."""
    temp = tmp_path / "work.tmp"
    temp.write_bytes(NEW)
    inode = temp.stat().st_ino
    target = tmp_path / "final" / "file"
    commit_file(temp, target)
    assert not temp.exists()
    assert (target.read_bytes(), target.stat().st_ino) == (NEW, inode)


def test_fsync_dir_refuses_a_file(tmp_path: Path) -> None:
    """fsync_dir works on a directory and raises NotADirectoryError for a plain file."""
    fsync_dir(tmp_path)
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        fsync_dir(tmp_path / "plain")
