"""The safe-path check accepts mirror-relative paths and nothing that could escape."""

from __future__ import annotations

import pytest
from hypothesis import given

from simplestreams import StreamFormatError, check_safe_path, path_problem
from tests.unit.simplestreams.strategies import safe_paths, unsafe_paths


@given(safe_paths)
def test_generated_safe_paths_are_accepted_unchanged(path: str) -> None:
    """Any path of non-empty, non-dot segments without controls or backslashes passes."""
    assert check_safe_path(path, "here") == path


@given(unsafe_paths())
def test_generated_unsafe_paths_are_always_rejected(path: str) -> None:
    """A safe path with any one defect injected is refused at the given location."""
    with pytest.raises(StreamFormatError) as caught:
        check_safe_path(path, "items[x].path")
    assert caught.value.location == "items[x].path"
    assert path_problem(path) == caught.value.reason


@pytest.mark.parametrize(
    "path",
    [
        "noble/amd64/20250709/ga-24.04/generic/boot-kernel",
        "streams/v1/com.ubuntu.maas:stable:v3:download.json",
        "bootloaders/pxe/i386/20210203.0/syslinux.tar.xz",
        "centos/8/amd64/20211104_01/root-tgz",
        "a/..b/c.",
    ],
)
def test_real_upstream_paths_are_safe(path: str) -> None:
    """Paths of the shapes images.maas.io uses, and dotted names, are accepted."""
    assert path_problem(path) is None


def test_lone_surrogate_is_refused() -> None:
    """A path that cannot be encoded as UTF-8 is refused."""
    assert path_problem("a/\udc80") == "path contains the control character '\\udc80'"


def test_non_string_path_is_refused() -> None:
    """A path must be a string."""
    assert path_problem(5) == "path must be a string, not int"
