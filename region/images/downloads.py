"""Downloading an import's blobs, with per-file progress kept in the database.

:func:`fetch_blobs` fetches what the store lacks through the Downloader's
``fetch_all`` (one bounded pool per HTTP session, a large file split into Range
parts over the idle connections) while a :class:`ProgressRecorder` writes each
file's ``bytes_done`` at most every ``interval`` seconds, so the API shows
``Downloading NN%`` as bytes arrive.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from types import TracebackType

import aiohttp

from common.ops.logging import get_logger
from common.storage.blobstore import BlobStore
from common.transfer.download import Downloader, DownloadOutcome, DownloadRequest
from common.transfer.limits import TransferLimits
from region.db import imports as repo_import
from region.db.connection import Database
from region.images.proxy import UpstreamSessions

log = get_logger("importer")
# Read size and write batch of each download: a quarter of the Downloader's default, as the
# daemon at rest leaves an import little room under its memory budget (bench/RESULTS.md, Memory).
REGION_BUFFER = 256 << 10


async def held_bytes(store: BlobStore, blobs: Mapping[str, int]) -> dict[str, int]:
    """Bytes held per sha256: the size when stored, a partial's length otherwise."""
    return await store.held_bytes(blobs)


class ProgressRecorder:
    """Counts bytes per blob as they arrive and writes them at most every ``interval``.

    Use as ``async with``; ``on_progress`` is the Downloader callback. Counts
    stop one byte short of the size: a file is complete only once verified.
    """

    def __init__(
        self,
        db: Database,
        held: Mapping[str, int],
        sizes: Mapping[str, int],
        *,
        interval: float,
    ) -> None:
        self._db = db
        self._held = dict(held)
        self._sizes = sizes
        self._interval = interval
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def on_progress(self, req: DownloadRequest, nbytes: int) -> None:
        """Downloader callback: ``nbytes`` more of ``req`` arrived."""
        ceiling = max(self._sizes.get(req.sha256, req.size) - 1, 0)
        self._held[req.sha256] = min(self._held.get(req.sha256, 0) + nbytes, ceiling)
        self._dirty.add(req.sha256)

    def finished(self, outcome: DownloadOutcome) -> DownloadOutcome:
        """Mark a verified file as complete (a failed one keeps its count); returns it."""
        if outcome.ok:
            self._held[outcome.request.sha256] = outcome.request.size
            self._dirty.add(outcome.request.sha256)
        return outcome

    async def flush(self) -> None:
        """Write the counts that changed since the last flush."""
        dirty, self._dirty = self._dirty, set()
        await repo_import.set_bytes_done(self._db, {s: self._held[s] for s in dirty})

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def __aenter__(self) -> ProgressRecorder:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.shield(self.flush())


async def fetch_blobs(
    db: Database,
    store: BlobStore,
    sessions: UpstreamSessions,
    requests: Sequence[DownloadRequest],
    held: Mapping[str, int],
    *,
    concurrency: int,
    interval: float,
    limits: TransferLimits | None = None,
) -> list[DownloadOutcome]:
    """Fetch ``requests`` into ``store``; one outcome per request, failures included.

    ``held`` is what :func:`held_bytes` found before. When done, each file row
    holds its size (fetched) or its partial's length (failed). Raises
    InsufficientSpaceError before fetching anything when the disk cannot hold them.
    """
    await store.ensure_space(sum(r.size - held.get(r.sha256, 0) for r in requests))
    sizes = {r.sha256: r.size for r in requests}
    recorder = ProgressRecorder(db, held, sizes, interval=interval)
    outcomes: list[DownloadOutcome] = []
    groups: dict[aiohttp.ClientSession, list[DownloadRequest]] = defaultdict(list)
    for req in requests:
        groups[sessions.for_url(req.url)].append(req)
    async with recorder:
        for session, reqs in groups.items():
            downloader = Downloader(
                session,
                store,
                on_progress=recorder.on_progress,
                limits=limits,
                chunk_size=REGION_BUFFER,
                read_bufsize=REGION_BUFFER,
            )
            # fetch_all: a large file left alone is split into Range parts (common/transfer/ranged.py)
            outcomes += await downloader.fetch_all(reqs, concurrency, on_outcome=recorder.finished)
    failed = {o.request.sha256: o.request.size for o in outcomes if not o.ok}
    partial = await held_bytes(store, failed)
    await repo_import.set_bytes_done(
        db,
        {
            o.request.sha256: o.request.size if o.ok else partial.get(o.request.sha256, 0)
            for o in outcomes
        },
    )
    return outcomes
