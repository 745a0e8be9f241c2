"""What to download: wanted items -> blobs, de-duplicated by sha256.

One squashfs is shared by every kernel product of a release/arch/serial, and
a kernel may repeat across serials, so the unit of work is the blob (sha256),
not the item.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass

from simplestreams.errors import StreamFormatError
from simplestreams.models import FlatItem


@dataclass(frozen=True, slots=True)
class Blob:
    """One content-addressed file and every item path that carries it (sorted)."""

    sha256: str
    size: int
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    """Blobs to fetch (ordered by first path) and blobs already held."""

    to_fetch: tuple[Blob, ...]
    already_present: tuple[Blob, ...]

    @property
    def total_bytes(self) -> int:
        """Bytes still to download."""
        return sum(blob.size for blob in self.to_fetch)

    @property
    def present_bytes(self) -> int:
        """Bytes already held locally."""
        return sum(blob.size for blob in self.already_present)


def _membership(present: Callable[[str], bool] | Container[str]) -> Callable[[str], bool]:
    if callable(present):
        return present
    return present.__contains__


def plan_downloads(
    items: Iterable[FlatItem], present: Callable[[str], bool] | Container[str]
) -> DownloadPlan:
    """Group the downloadable ``items`` by sha256 and split them by ``present``.

    ``present`` is a predicate or a container of sha256 digests already held.
    Items without a path are ignored. Raises StreamFormatError when one
    sha256 is listed with two different sizes.
    """
    sizes: dict[str, tuple[int, FlatItem]] = {}
    paths: dict[str, set[str]] = {}
    for item in items:
        if item.path is None or item.sha256 is None or item.size is None:
            continue
        seen = sizes.setdefault(item.sha256, (item.size, item))
        if seen[0] != item.size:
            raise StreamFormatError(
                f"{item.location}.size",
                f"sha256 {item.sha256} has size {item.size} here but {seen[0]} "
                f"at {seen[1].location}",
            )
        paths.setdefault(item.sha256, set()).add(item.path)
    is_present = _membership(present)
    blobs = sorted(
        (Blob(sha, sizes[sha][0], tuple(sorted(paths[sha]))) for sha in sizes),
        key=lambda blob: (blob.paths[0], blob.sha256),
    )
    to_fetch: list[Blob] = []
    already_present: list[Blob] = []
    for blob in blobs:
        (already_present if is_present(blob.sha256) else to_fetch).append(blob)
    return DownloadPlan(to_fetch=tuple(to_fetch), already_present=tuple(already_present))
