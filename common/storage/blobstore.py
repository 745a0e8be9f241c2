"""A content-addressed store of blobs, keyed by sha256.

Layout under ``root``::

    sha256/<2 hex>/<64 hex>   complete, verified blobs (read-only, never modified)
    tmp/<64 hex>.part         a download in progress, resumable after a restart
    tmp/ingest-<rand>.tmp     a local file being copied in
    <area>/                   a user's own work files (:meth:`BlobStore.area`)

``tmp/`` sits on the same filesystem as ``sha256/`` so that moving a finished
file into place is one atomic rename; a partial file is never at a final path.
Code outside this module asks the store about blobs (:meth:`BlobStore.has`,
:meth:`BlobStore.size_of`, :meth:`BlobStore.held_bytes`) rather than looking
at these paths.
Every filesystem call runs in a worker thread, never on the event loop.

Garbage collection must not run while downloads into the same store are in
progress: it may remove a partial that a download is still writing.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.errors import DigestMismatchError, InsufficientSpaceError, SizeMismatchError
from common.ops.logging import get_logger, short_sha
from common.storage.atomic import commit_file, temp_name

log = get_logger("blobstore")

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PART_SUFFIX = ".part"
_INGEST_PREFIX = "ingest-"
_STALE_INGEST_S = 3600.0  # an ingest temp this old belongs to a process that died
_COPY_CHUNK = 4 << 20
_MIN_MARGIN = 64 << 20


def check_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex digits; raise ValueError otherwise."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256 (64 lowercase hex digits): {sha256!r}")
    return sha256


@dataclass(frozen=True)
class GCResult:
    """What :meth:`BlobStore.collect_garbage` removed."""

    blobs_removed: int
    partials_removed: int
    bytes_freed: int


class BlobStore:
    """Blobs on disk under ``root``, addressed by their sha256.

    ``reserve`` is the free space :meth:`ensure_space` always leaves untouched;
    by default the larger of 64 MiB and 1% of the filesystem, so the store never
    fills the disk its host also needs.
    """

    def __init__(self, root: Path, *, reserve: int | None = None) -> None:
        self.root = root
        self._blobs = root / "sha256"
        self._tmp = root / "tmp"
        self._reserve = reserve

    def path_for(self, sha256: str) -> Path:
        """The final path of blob ``sha256`` (which may not exist yet)."""
        check_sha256(sha256)
        return self._blobs / sha256[:2] / sha256

    def partial_path(self, sha256: str) -> Path:
        """Where a download of ``sha256`` keeps its bytes until it is committed."""
        check_sha256(sha256)
        return self._tmp / f"{sha256}{_PART_SUFFIX}"

    def area(self, name: str) -> Path:
        """A directory for ``name``'s own work files, on the store's filesystem.

        A file finished there enters the store with :meth:`commit` (one rename).
        Raises ValueError for a name the store uses itself or that is not one
        plain path component.
        """
        if name in ("sha256", "tmp") or not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
            raise ValueError(f"not a usable area name: {name!r}")
        return self.root / name

    async def prepare(self) -> None:
        """Create the store's directories (every writing method does this itself)."""
        await asyncio.to_thread(self._prepare)

    def _prepare(self) -> None:
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    async def has(self, sha256: str, size: int) -> bool:
        """Tell whether blob ``sha256`` is stored with ``size`` bytes (no re-hash)."""
        path = self.path_for(sha256)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            return False
        return st.st_size == size

    async def size_of(self, sha256: str) -> int | None:
        """The size of stored blob ``sha256``, or None when it is not stored."""
        path = self.path_for(sha256)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            return None
        return st.st_size

    async def held_bytes(self, blobs: Mapping[str, int]) -> dict[str, int]:
        """Bytes on hand per sha256 of ``blobs`` (sha256 → expected size).

        The size for a blob stored with that size; else the length of its
        partial download, at most size - 1 (a partial counts as complete only
        once verified and committed); absent when there is neither.
        """
        return await asyncio.to_thread(self._held, dict(blobs))

    def _held(self, blobs: dict[str, int]) -> dict[str, int]:
        held: dict[str, int] = {}
        for sha256, size in blobs.items():
            try:
                if self.path_for(sha256).stat().st_size == size:
                    held[sha256] = size
                    continue
            except FileNotFoundError:
                pass
            try:
                partial = self.partial_path(sha256).stat().st_size
            except FileNotFoundError:
                continue
            held[sha256] = min(partial, max(size - 1, 0))
        return held

    async def commit(self, sha256: str, size: int, temp: Path) -> Path:
        """Move ``temp`` (already hashed by the caller) to the blob's final path.

        The file is fsynced, its size checked, renamed into place and the
        directory fsynced. Raises SizeMismatchError (leaving ``temp`` where it
        is) when the size is wrong. Returns the final path.
        """
        final = self.path_for(sha256)
        await asyncio.to_thread(self._commit, final, size, temp)
        log.debug("blob_committed", sha256=short_sha(sha256), bytes=size)
        return final

    def _commit(self, final: Path, size: int, temp: Path) -> None:
        with temp.open("rb") as f:
            actual = os.fstat(f.fileno()).st_size
            if actual != size:
                raise SizeMismatchError(url=str(temp), expected=size, actual=actual)
            os.fchmod(f.fileno(), 0o444)  # blobs are hard-linked into snapshots: keep intact
        commit_file(temp, final)

    async def ingest_bytes(self, data: bytes, *, sha256: str | None = None) -> str:
        """Store ``data`` and return its sha256.

        With ``sha256`` given, raise DigestMismatchError instead of storing
        bytes whose digest differs.
        """
        return await asyncio.to_thread(self._ingest, data, sha256, None)

    async def ingest_file(
        self, path: Path, *, sha256: str | None = None, size: int | None = None
    ) -> str:
        """Copy the local file ``path`` into the store and return its sha256.

        With ``sha256`` / ``size`` given, raise DigestMismatchError /
        SizeMismatchError instead of storing a file that differs.
        """
        return await asyncio.to_thread(self._ingest, path, sha256, size)

    def _ingest(self, source: bytes | Path, expected: str | None, expected_size: int | None) -> str:
        if expected is not None:
            check_sha256(expected)
        self._prepare()
        temp = self._tmp / f"{_INGEST_PREFIX}{secrets.token_hex(8)}.tmp"
        hasher = hashlib.sha256()
        size = 0
        try:
            with temp.open("wb") as out:
                if isinstance(source, bytes):
                    hasher.update(source)
                    out.write(source)
                    size = len(source)
                else:
                    with source.open("rb") as src:
                        while chunk := src.read(_COPY_CHUNK):
                            hasher.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
            digest = hasher.hexdigest()
            where = "<bytes>" if isinstance(source, bytes) else str(source)
            if expected_size is not None and size != expected_size:
                raise SizeMismatchError(url=where, expected=expected_size, actual=size)
            if expected is not None and digest != expected:
                raise DigestMismatchError(url=where, expected=expected, actual=digest)
            self._commit(self.path_for(digest), size, temp)
        finally:
            temp.unlink(missing_ok=True)
        return digest

    async def free_bytes(self) -> int:
        """Bytes available to this process on the store's filesystem."""
        free, _total = await asyncio.to_thread(self._disk_usage)
        return free

    def _disk_usage(self) -> tuple[int, int]:
        """(free, total) bytes of the store's filesystem; tests override this."""
        self._prepare()
        usage = shutil.disk_usage(self.root)
        return usage.free, usage.total

    async def ensure_space(self, needed: int) -> None:
        """Raise InsufficientSpaceError unless ``needed`` bytes fit above the reserve."""
        free, total = await asyncio.to_thread(self._disk_usage)
        reserve = self._reserve if self._reserve is not None else max(_MIN_MARGIN, total // 100)
        if needed + reserve > free:
            raise InsufficientSpaceError(path=str(self.root), needed=needed + reserve, free=free)

    async def collect_garbage(self, referenced: set[str]) -> GCResult:
        """Delete blobs and partials whose sha256 is not in ``referenced``.

        Partials of blobs already stored, and ingest temps older than an hour
        (left by a dead process), go too.
        Names that are not sha256 values are left alone.
        """
        result = await asyncio.to_thread(self._collect, frozenset(referenced))
        log.info(
            "blobstore_gc",
            blobs_removed=result.blobs_removed,
            partials_removed=result.partials_removed,
            bytes_freed=result.bytes_freed,
        )
        return result

    def _collect(self, referenced: frozenset[str]) -> GCResult:
        blobs = partials = freed = 0
        for prefix in _listdir(self._blobs):
            for entry in _listdir(prefix):
                if _SHA256.fullmatch(entry.name) and entry.name not in referenced:
                    freed += _remove(entry)
                    blobs += 1
        stale_before = time.time() - _STALE_INGEST_S
        for entry in _listdir(self._tmp):
            name = entry.name
            if name.endswith(_PART_SUFFIX):
                sha = name.removesuffix(_PART_SUFFIX)
                finished = sha in referenced and (self._blobs / sha[:2] / sha).exists()
                if _SHA256.fullmatch(sha) and (sha not in referenced or finished):
                    freed += _remove(entry)
                    partials += 1
            elif name.startswith(_INGEST_PREFIX) and entry.stat().st_mtime < stale_before:
                freed += _remove(entry)
        return GCResult(blobs_removed=blobs, partials_removed=partials, bytes_freed=freed)

    async def link_into(self, sha256: str, dest: Path) -> None:
        """Make ``dest`` a hard link to blob ``sha256`` (a copy across filesystems).

        An existing ``dest`` is replaced atomically; missing parent directories
        are created. Raises FileNotFoundError when the blob is not stored.
        """
        await asyncio.to_thread(_link_or_copy, self.path_for(sha256), dest)


def _link_or_copy(blob: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(temp_name(dest.name, ".link"))
    try:
        try:
            os.link(blob, temp)
        except OSError as exc:
            # EXDEV: another filesystem; EPERM/EMLINK: hard links refused or exhausted.
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copy2(blob, temp)
        temp.replace(dest)
    finally:
        temp.unlink(missing_ok=True)


def _listdir(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except FileNotFoundError:
        return []


def _remove(path: Path) -> int:
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size
