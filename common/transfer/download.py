"""Downloads into the blob store: streamed, hashed in the same pass, resumed, retried.

Each file is streamed into the store's partial file while its sha256 is
computed, both in worker threads (see :class:`PartialWriter`). A partial left
by an earlier attempt or an earlier process is resumed with a Range request.
Retryable failures are retried by :func:`common.transfer.retry.retrying`
(exponential backoff, full jitter); a digest mismatch is retried once from
zero. Only verified bytes are committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from common.errors import (
    BootsyncError,
    DigestMismatchError,
    HTTPStatusError,
    IntegrityError,
    StoreError,
    error_text,
)
from common.ops.logging import get_logger, short_sha
from common.storage.blobstore import BlobStore, check_sha256
from common.transfer.http import READ_BUFSIZE, get_into, make_session
from common.transfer.limits import Pace, TransferLimits
from common.transfer.ranged import (
    ConnectionBudget,
    PartsJob,
    RangeIgnoredError,
    RangeLayout,
    drop_layout,
    fetch_parts,
    hash_buffer,
    hash_file,
    load_layout,
)
from common.transfer.retry import RetryPolicy, retrying
from common.transfer.workers import run_bounded

__all__ = ["DownloadOutcome", "DownloadRequest", "Downloader", "PartialWriter", "make_session"]

log = get_logger("download")

DEFAULT_CHUNK = 1 << 20
# A file this large may be fetched as concurrent Range requests when connections
# are idle (fewer files left than connections), in parts of at least SPLIT_PART.
SPLIT_MIN = 64 << 20
SPLIT_PART = 32 << 20
# Once running, a part is split again (for a connection left idle) down to this: the
# parts then end close together instead of a few slow ones finishing alone.
SPLIT_STEAL = 4 << 20
_IOV_MAX = 1024  # writev's limit on buffers per call (Linux IOV_MAX)

ProgressCallback = Callable[["DownloadRequest", int], None]


@dataclass(frozen=True)
class DownloadRequest:
    """One file to fetch. Raises ValueError for a malformed sha256 or negative size."""

    url: str
    sha256: str
    size: int
    name: str = ""

    def __post_init__(self) -> None:
        check_sha256(self.sha256)
        if self.size < 0:
            raise ValueError(f"negative size {self.size} for {self.url}")


@dataclass(frozen=True)
class DownloadOutcome:
    """What happened to one request; ``error`` is None exactly when ``ok``."""

    request: DownloadRequest
    ok: bool
    error: BaseException | None
    bytes_received: int  # over the network, all attempts together
    resumed_from: int  # bytes already in the partial file when the fetch began
    attempts: int
    duration_s: float
    reused: bool  # the blob was already in the store: nothing was requested


class PartialWriter:
    """Appends to a partial file and hashes the same bytes, off the event loop.

    Bytes are gathered into batches of ``batch_size``; each batch is written
    and hashed by one executor hop while the next batch is being received (at
    most one batch in flight). One task at a time may use a writer. File
    errors raise StoreError (the OSError as its cause).

    Without ``hashing`` nothing is hashed, not even the bytes already in the
    file (an upload's intermediate chunk: only its last chunk needs the digest).
    """

    def __init__(
        self, path: Path, *, batch_size: int = DEFAULT_CHUNK, hashing: bool = True
    ) -> None:
        self.path = path
        self.size = 0  # bytes accepted; all on disk after flush()
        self._batch_size = batch_size
        self._file: BinaryIO | None = None
        self._hashing = hashing
        self._hasher = hashlib.sha256()
        self._batch: list[bytes] = []
        self._batched = 0
        self._in_flight: asyncio.Future[None] | None = None

    async def open(self, *, keep: int | None = None) -> int:
        """Open (or create) the file, hash the bytes already in it, return their count.

        With ``keep``, bytes beyond the first ``keep`` are cut off first.
        """
        await asyncio.to_thread(self._guarded, self._open, keep)
        return self.size

    async def write(self, data: bytes) -> None:
        """Accept ``data``; a full batch goes to a worker thread."""
        self._batch.append(data)
        self._batched += len(data)
        self.size += len(data)
        if self._batched >= self._batch_size:
            await self._hand_off()

    async def flush(self, *, durable: bool = False) -> None:
        """Return once every accepted byte is written to the file and hashed.

        With ``durable`` the bytes are on stable storage too (fdatasync).
        """
        if self._batch:
            await self._hand_off()
        await self._wait_in_flight()
        if durable:
            await asyncio.to_thread(self._guarded, self._sync)

    def hexdigest(self) -> str:
        """The sha256 of the file's bytes (call after :meth:`flush`)."""
        if not self._hashing:
            raise RuntimeError(f"{self.path}: written without hashing")
        return self._hasher.hexdigest()

    async def reset(self) -> None:
        """Forget every byte, on disk and in the digest, to start again from zero."""
        self._batch, self._batched = [], 0
        await self._wait_in_flight()
        await asyncio.to_thread(self._guarded, self._truncate)
        self._hasher = hashlib.sha256()
        self.size = 0

    async def close(self) -> None:
        """Close the file, keeping it on disk (bytes not flushed are dropped)."""
        self._batch, self._batched = [], 0
        try:
            await self._wait_in_flight()
        finally:
            # Still in flight only if cancelled meanwhile: the thread owns the file then.
            if self._file is not None and self._in_flight is None:
                file, self._file = self._file, None
                await asyncio.to_thread(file.close)

    async def discard(self) -> None:
        """Close the file and delete it."""
        await self.close()
        await asyncio.to_thread(self.path.unlink, missing_ok=True)

    async def _hand_off(self) -> None:
        await self._wait_in_flight()
        batch, self._batch, self._batched = self._batch, [], 0
        loop = asyncio.get_running_loop()
        self._in_flight = loop.run_in_executor(None, self._guarded, self._write, batch)

    async def _wait_in_flight(self) -> None:
        in_flight = self._in_flight
        if in_flight is None:
            return
        try:
            # Shielded: a cancelled caller must not mark a still-running write as done.
            await asyncio.shield(in_flight)
        finally:
            if in_flight.done():
                self._in_flight = None

    def _open(self, keep: int | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a+b", buffering=0)
        try:
            if keep is not None and os.fstat(file.fileno()).st_size > keep:
                file.truncate(keep)
            if not self._hashing:
                self.size = os.fstat(file.fileno()).st_size
            else:
                file.seek(0)
                with hash_buffer() as buffer, memoryview(buffer) as view:
                    while count := file.readinto(view):
                        self._hasher.update(view[:count])
                        self.size += count
        except BaseException:
            file.close()
            raise
        self._file = file

    def _write(self, batch: list[bytes]) -> None:
        # Hash and write the received chunks as they are: joining them first would
        # copy every byte once more (measured in bench/RESULTS.md).
        assert self._file is not None, "write after close"
        if self._hashing:
            for chunk in batch:
                self._hasher.update(chunk)
        fd = self._file.fileno()
        pending = [memoryview(chunk) for chunk in batch if chunk]
        while pending:
            written = os.writev(fd, pending[:_IOV_MAX])
            while written and pending:
                if written >= len(pending[0]):
                    written -= len(pending.pop(0))
                else:
                    pending[0] = pending[0][written:]
                    written = 0

    def _truncate(self) -> None:
        if self._file is not None:
            self._file.truncate(0)

    def _sync(self) -> None:
        if self._file is not None:
            os.fdatasync(self._file.fileno())

    def _guarded(self, func: Callable[..., None], *args: object) -> None:
        try:
            func(*args)
        except OSError as exc:
            raise StoreError(f"{self.path}: {exc}") from exc


@dataclass
class _Progress:
    """Counters of one fetch, across its attempts."""

    attempts: int = 0
    received: int = 0
    resumed_from: int = 0


class Downloader:
    """Fetches files into a BlobStore over one aiohttp session.

    ``on_progress(request, nbytes)`` is called on the event loop with the
    number of bytes just received (a delta, not a total). ``limits`` sets the
    minimum rate and with it each file's deadline (see common/transfer/limits.py).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        store: BlobStore,
        *,
        retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        stall_timeout: float = 30.0,
        connect_timeout: float = 15.0,
        chunk_size: int = DEFAULT_CHUNK,
        on_progress: ProgressCallback | None = None,
        limits: TransferLimits | None = None,
        split_min: int = SPLIT_MIN,
        part_min: int = SPLIT_PART,
        read_bufsize: int = READ_BUFSIZE,
    ) -> None:
        self._session = session
        self._store = store
        self._policy = RetryPolicy(
            retries=retries, backoff_base=backoff_base, backoff_max=backoff_max
        )
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=stall_timeout
        )
        self._chunk_size = chunk_size
        self._read_bufsize = read_bufsize
        self._on_progress = on_progress
        self._limits = limits or TransferLimits()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._split_min = split_min
        self._part_min = part_min
        self._connections: ConnectionBudget | None = None

    async def fetch_all(
        self,
        reqs: Iterable[DownloadRequest],
        concurrency: int,
        *,
        on_outcome: Callable[[DownloadOutcome], object] | None = None,
    ) -> list[DownloadOutcome]:
        """Fetch every request, ``concurrency`` at a time; outcomes in input order.

        One file's failure does not stop the others. Cancelling this cancels
        every download promptly; their partial files stay for a later resume.
        A file of at least ``split_min`` bytes is fetched by Range requests in
        parts of ``part_min``: on ``concurrency // files left`` connections at
        first, joined by every connection that falls idle once no file waits
        (see :mod:`common.transfer.ranged`). ``on_outcome`` is called with each
        file's outcome as soon as that file is done.
        """
        reqs = list(reqs)
        if concurrency < 1:
            raise ValueError(f"limit must be at least 1, got {concurrency}")
        outer, self._connections = self._connections, ConnectionBudget(concurrency, len(reqs))
        try:
            if on_outcome is None:
                return await run_bounded(reqs, self.fetch, concurrency)

            async def fetch(req: DownloadRequest) -> DownloadOutcome:
                outcome = await self.fetch(req)
                on_outcome(outcome)
                return outcome

            return await run_bounded(reqs, fetch, concurrency)
        finally:
            self._connections = outer

    async def fetch(self, req: DownloadRequest) -> DownloadOutcome:
        """Fetch one file into the store; a failure is reported in the outcome.

        Only cancellation (CancelledError) is raised.
        """
        started = time.monotonic()
        progress = _Progress()
        flog = _log_for(req)
        error: BootsyncError | None = None
        reused = False
        lock = self._locks.setdefault(req.sha256, asyncio.Lock())
        connections = self._connections
        if connections is not None:
            connections.started()
        try:
            async with lock:  # the same blob twice at once would share one partial file
                if await self._store.has(req.sha256, req.size):
                    reused = True
                    flog.debug("download_reused", bytes=req.size)
                else:
                    await self._download(req, progress, connections)
        except BootsyncError as exc:
            error = exc
        except OSError as exc:
            error = StoreError(f"{self._store.root}: {exc}")
            error.__cause__ = exc
        finally:
            if connections is not None:
                connections.finished()
        duration = time.monotonic() - started
        if error is not None:
            flog.warning(
                "download_failed",
                error=error_text(error),
                reason=_reason(error),
                attempts=progress.attempts,
                duration_s=round(duration, 3),
            )
        elif not reused:
            flog.info(
                "download_finished",
                bytes=progress.received,
                size=req.size,
                duration_s=round(duration, 3),
                resumed_from=progress.resumed_from,
                attempts=progress.attempts,
            )
        return DownloadOutcome(
            request=req,
            ok=error is None,
            error=error,
            bytes_received=progress.received,
            resumed_from=progress.resumed_from,
            attempts=progress.attempts,
            duration_s=duration,
            reused=reused,
        )

    async def _download(
        self, req: DownloadRequest, progress: _Progress, connections: ConnectionBudget | None
    ) -> None:
        path = self._store.partial_path(req.sha256)
        layout = await asyncio.to_thread(load_layout, path, req.size)
        parts = 1
        if connections is not None:
            parts = connections.parts_for(
                req.size, split_min=self._split_min, part_min=self._part_min
            )
            if layout is None and parts > 0 and not await asyncio.to_thread(_has_bytes, path):
                layout = RangeLayout.chunks(req.size, self._part_min)
        if layout is not None:
            try:
                await self._download_ranged(req, progress, layout, connections, max(1, parts))
            except RangeIgnoredError as exc:
                _log_for(req).warning("download_range_ignored", status=exc.status)
                await asyncio.to_thread(path.unlink, missing_ok=True)
            else:
                return
        await self._download_streamed(req, progress)

    async def _download_ranged(
        self,
        req: DownloadRequest,
        progress: _Progress,
        layout: RangeLayout,
        connections: ConnectionBudget | None,
        at_once: int,
    ) -> None:
        """Fetch ``req`` as the parts of ``layout``, verify the whole file, commit it."""
        path = self._store.partial_path(req.sha256)
        flog = _log_for(req)
        progress.resumed_from = layout.done
        await self._store.ensure_space(req.size - layout.done)
        job = PartsJob(
            session=self._session,
            url=req.url,
            path=path,
            timeout=self._timeout,
            policy=self._policy,
            limits=self._limits,
            batch_size=self._chunk_size,
            count=self._count(req, progress),
            log=flog,
            budget=connections,
            part_min=min(self._part_min, SPLIT_STEAL),
            connections=at_once,
        )
        try:
            for tries in (1, 2):
                flog.info(
                    "download_started",
                    size=req.size,
                    resumed_from=layout.done,
                    parts=len(layout.parts),
                )
                made, actual = await fetch_parts(job, layout)
                progress.attempts += made
                if actual is None:
                    actual = await asyncio.to_thread(hash_file, path)
                if actual == req.sha256:
                    break
                error = DigestMismatchError(url=req.url, expected=req.sha256, actual=actual)
                if tries == 2:
                    raise error
                # A corrupting hop or a stale part: every part once more from zero.
                flog.warning(
                    "download_retrying", attempt=tries, delay_s=0.0, error=error_text(error)
                )
                await asyncio.to_thread(path.unlink, missing_ok=True)
                layout = RangeLayout.chunks(req.size, self._part_min)
            await asyncio.to_thread(drop_layout, path)
            await self._store.commit(req.sha256, req.size, path)
        except IntegrityError:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise

    async def _download_streamed(self, req: DownloadRequest, progress: _Progress) -> None:
        writer = PartialWriter(self._store.partial_path(req.sha256), batch_size=self._chunk_size)
        progress.resumed_from = await writer.open()
        try:
            if writer.size > req.size:
                await writer.reset()
                progress.resumed_from = 0
            await self._store.ensure_space(req.size - writer.size)
            _log_for(req).info(
                "download_started", size=req.size, resumed_from=progress.resumed_from
            )
            await self._attempt_until_done(req, writer, progress)
            await writer.close()
            await self._store.commit(req.sha256, req.size, writer.path)
        except asyncio.CancelledError:
            # Quick (at most one batch write is in flight), and shielded so that a
            # second cancellation cannot leave the file open.
            await asyncio.shield(writer.close())
            raise
        except IntegrityError:
            await writer.discard()
            raise
        except BaseException:
            await writer.close()
            raise

    async def _attempt_until_done(
        self, req: DownloadRequest, writer: PartialWriter, progress: _Progress
    ) -> None:
        try:
            await self._fetch_verified(req, writer, progress)
        except DigestMismatchError as exc:
            # Bad bytes (a stale partial, a corrupting hop): once more from zero.
            _log_for(req).warning(
                "download_retrying",
                attempt=progress.attempts,
                delay_s=0.0,
                error=error_text(exc),
            )
            await writer.reset()
            await self._fetch_verified(req, writer, progress)

    async def _fetch_verified(
        self, req: DownloadRequest, writer: PartialWriter, progress: _Progress
    ) -> None:
        """Fill ``writer`` up to ``req.size`` (retrying), then check its sha256."""
        pace = Pace(self._limits, url=req.url, size=req.size)

        async def attempt() -> None:
            progress.attempts += 1
            if writer.size < req.size:
                await get_into(
                    self._session,
                    req.url,
                    writer,
                    size=req.size,
                    limits=self._timeout,
                    on_bytes=self._count(req, progress),
                    pace=pace,
                    read_bufsize=self._read_bufsize,
                )

        await retrying(attempt, self._policy, log=_log_for(req), event="download_retrying")
        _check_digest(req, writer.hexdigest())

    def _count(self, req: DownloadRequest, progress: _Progress) -> Callable[[int], None]:
        def count(nbytes: int) -> None:
            progress.received += nbytes
            if self._on_progress is not None:
                self._on_progress(req, nbytes)

        return count


def _has_bytes(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _check_digest(req: DownloadRequest, actual: str) -> None:
    if actual != req.sha256:
        raise DigestMismatchError(url=req.url, expected=req.sha256, actual=actual)


def _log_for(req: DownloadRequest) -> Any:
    bound = log.bind(url=req.url, sha256=short_sha(req.sha256))
    return bound.bind(name=req.name) if req.name else bound


def _reason(exc: BootsyncError) -> str:
    """A short snake_case word for dashboards: ``http_404``, ``stall``, ``sha256_mismatch``."""
    if isinstance(exc, HTTPStatusError):
        return f"http_{exc.status}"
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason
    words = re.findall(r"[A-Z][a-z0-9]*", type(exc).__name__.removesuffix("Error"))
    return "_".join(words).lower() or "error"
