"""The safe-path rule for every ``path`` taken from stream data.

Stream paths are joined to a mirror root (for URLs) and to local directories,
so a path that could climb out of the root, name a directory, or mean
different things on different systems is refused outright.

Stricter, :func:`served_path_problem` is the rule for what a region publishes
and a rack lays out: a safe path that can also be stored and served (no hidden
segment, none longer than a file system takes, a bounded total length).
"""

from __future__ import annotations

import unicodedata

from simplestreams.errors import StreamFormatError

# Cc: C0/C1 controls including NUL; Cs: lone surrogates, which no file system
# or URL can carry.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs"})


def path_problem(path: object) -> str | None:
    """Return why ``path`` is unsafe, or None when it is a safe relative path."""
    if not isinstance(path, str):
        return f"path must be a string, not {type(path).__name__}"
    control = next((c for c in path if unicodedata.category(c) in _REFUSED_CATEGORIES), None)
    segments = path.split("/")
    problems = (
        (not path, "path is empty"),
        (path.startswith("/"), "path is absolute"),
        ("\\" in path, "path contains a backslash"),
        (control is not None, f"path contains the control character {control!r}"),
        ("" in segments, "path has an empty segment ('//' or a trailing '/')"),
        (".." in segments, "path has a '..' segment"),
        ("." in segments, "path has a '.' segment"),
    )
    return next((reason for failed, reason in problems if failed), None)


def check_safe_path(path: str, location: str) -> str:
    """Return ``path`` unchanged if it is a safe mirror-relative path.

    Safe means: not empty, relative (no leading ``/``), no backslash, no NUL or
    other control character, and every ``/``-separated segment non-empty and
    neither ``.`` nor ``..``. Raises StreamFormatError at ``location`` otherwise.
    """
    problem = path_problem(path)
    if problem is not None:
        raise StreamFormatError(location, problem)
    return path


MAX_SEGMENT_BYTES = 255
"""The longest path segment (UTF-8 bytes) a file system takes: NAME_MAX on Linux."""

MAX_SERVED_PATH_BYTES = 1024
"""The longest stream path (UTF-8 bytes) published; real ones are under 120."""


def _shown(segment: str) -> str:
    return repr(segment if len(segment) <= 32 else segment[:24] + "...")


def served_segment_problem(segment: object) -> str | None:
    """Why ``segment`` cannot be one segment of a published and served path, or None.

    A served segment is a non-empty string without ``/``, backslash or control
    characters, not starting with ``.`` (the region and the racks answer 404 for
    hidden names, so a dot-file could be published but never fetched), and at
    most :data:`MAX_SEGMENT_BYTES` bytes in UTF-8.
    """
    if not isinstance(segment, str):
        return f"path segment must be a string, not {type(segment).__name__}"
    control = next((c for c in segment if unicodedata.category(c) in _REFUSED_CATEGORIES), None)
    # Encoded only once no lone surrogate can be in it.
    size = 0 if control is not None else len(segment.encode("utf-8"))
    shown = _shown(segment)
    problems = (
        (not segment, "path segment is empty"),
        ("/" in segment, f"path segment {shown} holds a '/'"),
        ("\\" in segment, f"path segment {shown} holds a backslash"),
        (control is not None, f"path segment {shown} contains the control character {control!r}"),
        (segment.startswith("."), f"path segment {shown} starts with '.'"),
        (
            size > MAX_SEGMENT_BYTES,
            f"path segment {shown} is {size} bytes, more than {MAX_SEGMENT_BYTES}",
        ),
    )
    return next((reason for failed, reason in problems if failed), None)


def served_path_problem(path: object) -> str | None:
    """Why ``path`` cannot be published and served, or None when it can.

    The one rule for names on both sides of the rack protocol: the region
    refuses such items when it parses a stream, and a rack refuses them when it
    lays a snapshot out. A served path is a safe path (:func:`path_problem`)
    whose every segment passes :func:`served_segment_problem`, at most
    :data:`MAX_SERVED_PATH_BYTES` bytes long in all.
    """
    problem = path_problem(path)
    if problem is not None:
        return problem
    assert isinstance(path, str)
    for segment in path.split("/"):
        problem = served_segment_problem(segment)
        if problem is not None:
            return problem
    size = len(path.encode("utf-8"))
    if size > MAX_SERVED_PATH_BYTES:
        return f"path is {size} bytes, more than {MAX_SERVED_PATH_BYTES}"
    return None


def check_served_path(path: str, location: str) -> str:
    """Return ``path`` unchanged if it can be published and served (:func:`served_path_problem`).

    Raises StreamFormatError at ``location`` (e.g. ``products[p].versions[v].items[i].path``)
    with the reason otherwise.
    """
    problem = served_path_problem(path)
    if problem is not None:
        raise StreamFormatError(location, problem)
    return path
