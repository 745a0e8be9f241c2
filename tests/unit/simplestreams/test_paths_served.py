"""The served-name rule: what a region may publish is exactly what it and its racks can serve."""

from __future__ import annotations

import pytest
from hypothesis import given

from simplestreams import (
    MAX_SEGMENT_BYTES,
    MAX_SERVED_PATH_BYTES,
    StreamFormatError,
    check_served_path,
    path_problem,
    served_path_problem,
    served_segment_problem,
)
from tests.unit.simplestreams.strategies import unsafe_paths


@pytest.mark.parametrize(
    "path",
    [
        "noble/amd64/20250709/ga-24.04/generic/boot-kernel",
        "streams/v1/com.ubuntu.maas:stable:v3:download.json",
        "bootloaders/pxe/i386/20210203.0/syslinux.tar.xz",
        "centos/8/amd64/20211104_01/root-tgz",
        "a/b./c.",
        "x" * MAX_SEGMENT_BYTES,
    ],
)
def test_real_upstream_paths_can_be_served(path: str) -> None:
    """Paths of the shapes images.maas.io uses, and a segment of exactly 255 bytes, pass."""
    assert served_path_problem(path) is None
    assert check_served_path(path, "items[x].path") == path


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("ubuntu/.hidden/boot-kernel", "path segment '.hidden' starts with '.'"),
        ("ubuntu/noble/.squashfs", "path segment '.squashfs' starts with '.'"),
        ("a/..b/c", "path segment '..b' starts with '.'"),
        ("x" * 300, "path segment 'xxxxxxxxxxxxxxxxxxxxxxxx...' is 300 bytes, more than 255"),
        ("é" * 128, "path segment 'éééééééééééééééééééééééé...' is 256 bytes, more than 255"),
        ("a/" * 600 + "b", f"path is 1201 bytes, more than {MAX_SERVED_PATH_BYTES}"),
        ("../../etc", "path has a '..' segment"),
        ("a\x00b", "path contains the control character '\\x00'"),
    ],
)
def test_names_that_cannot_be_served_are_refused_with_the_reason(path: str, problem: str) -> None:
    """Dot-files, over-long segments and paths, and unsafe paths are refused, saying why."""
    assert served_path_problem(path) == problem
    with pytest.raises(StreamFormatError) as caught:
        check_served_path(path, "products[p].versions[v].items[i].path")
    assert caught.value.location == "products[p].versions[v].items[i].path"
    assert caught.value.reason == problem


@given(unsafe_paths())
def test_every_unsafe_path_is_also_unservable(path: str) -> None:
    """The served rule is stricter than the safe-path rule: it never accepts an unsafe path."""
    assert served_path_problem(path) == path_problem(path)


@pytest.mark.parametrize(
    ("segment", "problem"),
    [
        ("", "path segment is empty"),
        (".", "path segment '.' starts with '.'"),
        ("a/b", "path segment 'a/b' holds a '/'"),
        ("a\\b", "path segment 'a\\\\b' holds a backslash"),
        ("a\x07", "path segment 'a\\x07' contains the control character '\\x07'"),
        ("maas.meta", None),
        ("boot-kernel", None),
    ],
)
def test_one_segment_is_judged_alone(segment: str, problem: str | None) -> None:
    """A single segment (a label, a file name) may hold no separator at all."""
    assert served_segment_problem(segment) == problem


def test_non_string_path_is_refused() -> None:
    """A path must be a string."""
    assert served_path_problem(None) == "path must be a string, not NoneType"
    assert served_segment_problem(7) == "path segment must be a string, not int"
