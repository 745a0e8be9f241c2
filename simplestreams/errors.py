"""The one error the SimpleStreams format layer raises for bad input."""

from __future__ import annotations

from dataclasses import dataclass


class StreamFormatError(ValueError):
    """A stream document breaks the format; ``location`` says exactly where.

    ``location`` is a path into the document such as
    ``products[p].versions[v].items[i].sha256``, prefixed by the source file or
    URL when the parser was given one. ``str()`` is ``"{location}: {reason}"``.
    """

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")

    def __reduce__(self) -> tuple[type[StreamFormatError], tuple[str, str]]:
        # The default reduce would call __init__ with the one-string message.
        return (type(self), (self.location, self.reason))


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused product version (or document): where the offending field is, and why."""

    location: str  # "<document>: products[p].versions[v].items[i].path"
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


def at(source: str, path: str) -> str:
    """Join a document source and a path inside it into one location string."""
    if source and path:
        return f"{source}: {path}"
    return source or path or "(document)"
