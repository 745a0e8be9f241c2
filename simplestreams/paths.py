"""The safe-path rule for every ``path`` taken from stream data.

Stream paths are joined to a mirror root (for URLs) and to local directories,
so a path that could climb out of the root, name a directory, or mean
different things on different systems is refused outright.
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
