"""Uploads in progress, on the BlobStore's filesystem: chunked partials and staged bodies.

Layout in the store's ``uploads`` area (:meth:`BlobStore.area`)::

    <file id>.part           the bytes received so far for a boot-resource file
    incoming-<rand>.tmp      a one-request upload (``content``) being received

Bytes go through the downloader's :class:`PartialWriter`: written as they
arrive and hashed in the same pass, in worker threads, never held whole.
Being on the store's filesystem, a finished upload enters the store with one
rename (``BlobStore.commit``). A partial's trusted length is the one the
database recorded after the last complete chunk: a chunk cut short leaves
bytes beyond it, which the next chunk cuts away. Only the chunk that completes
a file hashes it (the bytes already there, then its own as they arrive).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from common.ops.logging import get_logger, short_sha
from common.storage.blobstore import BlobStore
from common.transfer.download import PartialWriter

log = get_logger("uploads")

AREA = "uploads"
_PARTIAL = re.compile(r"(\d+)\.part")
_INCOMING_PREFIX = "incoming-"
_STALE_INCOMING_S = 3600.0


@dataclass(frozen=True)
class Staged:
    """A body received whole into a temp file: where, its sha256 and size."""

    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class Appended:
    """What one chunk added: its bytes, and the whole partial's sha256 if it was hashed."""

    received: int
    sha256: str | None


async def _receive(writer: PartialWriter, chunks: AsyncIterator[bytes], *, durable: bool) -> None:
    """Write ``chunks`` through ``writer`` and close it; the file stays on disk."""
    try:
        async for chunk in chunks:
            await writer.write(chunk)
        await writer.flush(durable=durable)
    finally:
        # Shielded: a cancelled handler must not leave the file open.
        await asyncio.shield(writer.close())


class UploadArea:
    """Partial and staged uploads of ``store``, in its ``uploads`` area."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.root = store.area(AREA)

    def partial_path(self, file_id: int) -> Path:
        """Where the bytes of boot-resource file ``file_id`` collect."""
        return self.root / f"{file_id}.part"

    async def partial_size(self, file_id: int) -> int:
        """Bytes in the partial of ``file_id`` (0 when there is none)."""
        try:
            return (await asyncio.to_thread(self.partial_path(file_id).stat)).st_size
        except FileNotFoundError:
            return 0

    async def append(
        self, file_id: int, offset: int, chunks: AsyncIterator[bytes], *, last: bool = False
    ) -> Appended:
        """Cut the partial to ``offset`` bytes and write ``chunks`` after them, durably.

        With ``last`` the whole partial is hashed on the way (its sha256 in the
        answer). Raises what reading ``chunks`` raises, and StoreError when the
        file cannot be written; the bytes written until then stay beyond
        ``offset`` (the caller does not count them).
        """
        writer = PartialWriter(self.partial_path(file_id), hashing=last)
        await writer.open(keep=offset)
        start = writer.size
        await _receive(writer, chunks, durable=True)
        return Appended(writer.size - start, writer.hexdigest() if last else None)

    async def commit(self, file_id: int, sha256: str, size: int) -> None:
        """Move the verified partial of ``file_id`` into the store as blob ``sha256``."""
        await self.store.commit(sha256, size, self.partial_path(file_id))
        log.info("upload_stored", sha256=short_sha(sha256), bytes=size)

    async def discard(self, file_id: int) -> None:
        """Remove the partial of ``file_id`` (nothing if there is none)."""
        await asyncio.to_thread(self.partial_path(file_id).unlink, missing_ok=True)

    async def stage(self, chunks: AsyncIterator[bytes]) -> Staged:
        """Receive ``chunks`` into a temp file, hashed on the way.

        The temp file is removed when reading or writing fails.
        """
        path = self.root / f"{_INCOMING_PREFIX}{secrets.token_hex(8)}.tmp"
        writer = PartialWriter(path)
        await writer.open()
        try:
            await _receive(writer, chunks, durable=False)  # commit fsyncs it
        except BaseException:
            await asyncio.shield(asyncio.to_thread(path.unlink, missing_ok=True))
            raise
        return Staged(path=path, sha256=writer.hexdigest(), size=writer.size)

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
