"""Uploads in progress, on the BlobStore's filesystem: chunked partials and staged bodies.

Layout under ``<store root>/uploads``::

    <file id>.part           the bytes received so far for a boot-resource file
    incoming-<rand>.tmp      a one-request upload (``content``) being received

Being on the store's filesystem, a finished upload enters the store with one
rename (``BlobStore.commit``). A partial's trusted length is the one the
database recorded after the last complete chunk: a chunk cut short leaves
bytes beyond it, which the next chunk truncates away. Every file operation runs
in a worker thread; bodies are written as they arrive, never held whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from common.ops.logging import get_logger, short_sha
from common.storage.blobstore import BlobStore

log = get_logger("uploads")

_PARTIAL = re.compile(r"(\d+)\.part")
_INCOMING_PREFIX = "incoming-"
_STALE_INCOMING_S = 3600.0
_WRITE_CHUNK = 1 << 20
_HASH_CHUNK = 4 << 20

Transform = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Staged:
    """A body received whole into a temp file: where, its sha256 and size."""

    path: Path
    sha256: str
    size: int


class _Writer:
    """A file written from worker threads, hashing (optionally) what it writes."""

    def __init__(self, path: Path, *, offset: int | None, transform: Transform | None) -> None:
        self._path, self._offset, self._transform = path, offset, transform
        self._file: BinaryIO | None = None
        self.hasher = hashlib.sha256()
        self.written = 0

    def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        if self._offset is None:
            self._file = self._path.open("xb")
        else:
            self._file = self._path.open("r+b" if self._path.exists() else "w+b")
            self._file.truncate(self._offset)
            self._file.seek(self._offset)

    def write(self, data: bytes) -> None:
        if self._transform is not None:
            data = self._transform(data)
        assert self._file is not None
        self.hasher.update(data)
        self._file.write(data)
        self.written += len(data)

    def close(self, *, sync: bool) -> None:
        if self._file is None:
            return
        try:
            if sync:
                self._file.flush()
                os.fdatasync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None


async def _pump(writer: _Writer, chunks: AsyncIterator[bytes]) -> None:
    """Write ``chunks`` in pieces of about a megabyte, each in a worker thread."""
    await asyncio.to_thread(writer.open)
    try:
        pending = bytearray()
        async for chunk in chunks:
            pending += chunk
            if len(pending) >= _WRITE_CHUNK:
                await asyncio.to_thread(writer.write, bytes(pending))
                pending.clear()
        if pending:
            await asyncio.to_thread(writer.write, bytes(pending))
    except BaseException:
        await asyncio.shield(asyncio.to_thread(writer.close, sync=False))
        raise
    await asyncio.to_thread(writer.close, sync=True)


class UploadArea:
    """Partial and staged uploads of ``store``, in ``<store root>/uploads``."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.root = store.root / "uploads"

    def partial_path(self, file_id: int) -> Path:
        """Where the bytes of boot-resource file ``file_id`` collect."""
        return self.root / f"{file_id}.part"

    async def partial_size(self, file_id: int) -> int:
        """Bytes in the partial of ``file_id`` (0 when there is none)."""
        try:
            return (await asyncio.to_thread(self.partial_path(file_id).stat)).st_size
        except FileNotFoundError:
            return 0

    async def append(self, file_id: int, offset: int, chunks: AsyncIterator[bytes]) -> int:
        """Cut the partial to ``offset`` bytes and write ``chunks`` after them; bytes written.

        Raises what reading ``chunks`` raises; the bytes written until then stay
        beyond ``offset`` (the caller does not count them).
        """
        writer = _Writer(self.partial_path(file_id), offset=offset, transform=None)
        await _pump(writer, chunks)
        return writer.written

    async def digest(self, file_id: int) -> str:
        """The sha256 of the partial of ``file_id``, read in a worker thread."""
        return await asyncio.to_thread(_hash_file, self.partial_path(file_id))

    async def commit(self, file_id: int, sha256: str, size: int) -> None:
        """Move the verified partial of ``file_id`` into the store as blob ``sha256``."""
        await self.store.commit(sha256, size, self.partial_path(file_id))
        log.info("upload_stored", sha256=short_sha(sha256), bytes=size)

    async def discard(self, file_id: int) -> None:
        """Remove the partial of ``file_id`` (nothing if there is none)."""
        await asyncio.to_thread(self.partial_path(file_id).unlink, missing_ok=True)

    async def stage(
        self, chunks: AsyncIterator[bytes], *, transform: Transform | None = None
    ) -> Staged:
        """Receive ``chunks`` (each passed through ``transform``) into a temp file, hashed.

        The temp file is removed when reading or writing fails.
        """
        path = self.root / f"{_INCOMING_PREFIX}{secrets.token_hex(8)}.tmp"
        writer = _Writer(path, offset=None, transform=transform)
        try:
            await _pump(writer, chunks)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(path.unlink, missing_ok=True))
            raise
        return Staged(path=path, sha256=writer.hasher.hexdigest(), size=writer.written)

    async def commit_staged(self, staged: Staged) -> None:
        """Move a staged body into the store (its sha256 and size were measured)."""
        await self.store.commit(staged.sha256, staged.size, staged.path)
        log.info("upload_stored", sha256=short_sha(staged.sha256), bytes=staged.size)

    async def drop_staged(self, staged: Staged) -> None:
        """Remove a staged body (nothing if it was committed)."""
        await asyncio.to_thread(staged.path.unlink, missing_ok=True)

    async def sweep(self, live: set[int]) -> int:
        """Remove partials of files not in ``live`` and stale staged bodies; how many."""
        removed = await asyncio.to_thread(self._sweep, frozenset(live))
        if removed:
            log.info("uploads_swept", files_removed=removed)
        return removed

    def _sweep(self, live: frozenset[int]) -> int:
        removed = 0
        stale_before = time.time() - _STALE_INCOMING_S
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return 0
        for entry in entries:
            match = _PARTIAL.fullmatch(entry.name)
            orphan = match is not None and int(match.group(1)) not in live
            stale = entry.name.startswith(_INCOMING_PREFIX) and entry.stat().st_mtime < stale_before
            if orphan or stale:
                entry.unlink(missing_ok=True)
                removed += 1
        return removed


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_HASH_CHUNK):
            hasher.update(block)
    return hasher.hexdigest()
