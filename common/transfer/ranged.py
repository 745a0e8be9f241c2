"""One large file fetched as concurrent Range requests into one sparse partial file.

A slow link per connection (a CDN or mirror capping each connection) makes
one 1 GiB squashfs take as long as the cap allows, however many connections
are idle. :func:`fetch_parts` fills a :class:`RangeLayout`: the file is cut
into contiguous parts (32 MiB in the Downloader), and each connection the file
is given takes the next part in file order with ``Range: bytes=a-b`` (retried
and resumed on its own), writing it at its offset into one preallocated file
with ``pwritev`` in worker threads; over plain HTTP without a proxy each part
request is received and written by a thread of its own instead
(:mod:`common.transfer.bulk`). Connections a :class:`ConnectionBudget`
has to spare join while the file runs; with no part left to take, an idle
connection halves the running part with most left, so the parts end together.
Because parts complete in about file order, the sha256 follows the gap-free
prefix in a worker thread while the rest arrives.

Every second the file is fdatasynced and then the parts' progress recorded in
an extended attribute of the partial file (``user.bootsync.ranges``), so an
interrupted download resumes part by part and the store's garbage collection
removes the state with the file. Where extended attributes are not supported
the partial is cut back to the first part's finished bytes, which a
single-stream download can resume.

A server that answers a part with 200 (it ignores Range), 416 or a range
other than the one asked for raises :class:`RangeIgnoredError`: the caller
starts over with one stream.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import json
import mmap
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from common.errors import HTTPStatusError, SizeMismatchError, TruncatedBodyError, UpstreamError
from common.transfer.bulk import BulkResponse, Unsupported, bulk_usable, open_bulk
from common.transfer.http import (
    parse_content_range,
    parse_retry_after,
    read_more_per_call,
    translate_error,
)
from common.transfer.limits import Pace, TransferLimits
from common.transfer.retry import RetryPolicy, retrying

__all__ = [
    "RANGES_XATTR",
    "ConnectionBudget",
    "Part",
    "RangeIgnoredError",
    "RangeLayout",
    "RangeWriter",
    "fetch_parts",
    "hash_buffer",
    "hash_file",
]

RANGES_XATTR = "user.bootsync.ranges"
# Memory per part request (a split file runs up to --concurrency of them at once):
# aiohttp's read buffer and the writer's batch. Larger ones made the peak RSS grow
# with file size, with no gain in speed (measured in bench/RESULTS.md).
PART_READ_BUFSIZE = 256 << 10
PART_BATCH = 256 << 10
# One hash buffer per file, mmap-backed: a malloc'ed one this large, freed in a
# worker thread, stays in that thread's glibc arena (bench/RESULTS.md, Memory).
_HASH_CHUNK = 1 << 20
_IOV_MAX = 1024
_SAVE_EVERY_S = 1.0
_SPLIT_CHECK_S = 0.1
_FOLLOW_STEP = 8 << 20  # the running hash reads this much at least per hop
_FOLLOW_PAUSE_S = 0.05


class ConnectionBudget:
    """The connections of one batch of downloads, and who may split a file to use them.

    A file's download holds one connection from :meth:`started` to
    :meth:`finished`; a split download gives it back and holds one per part
    request instead. Connections left idle once no file is waiting are
    :meth:`spare`: a split download takes them by splitting its largest part.
    """

    def __init__(self, limit: int, files: int) -> None:
        self.limit = limit
        self.queued = files  # not started yet
        self.in_flight = 0
        self.in_use = 0

    def started(self) -> None:
        self.queued -= 1
        self.in_flight += 1
        self.in_use += 1

    def finished(self) -> None:
        self.in_flight -= 1
        self.in_use -= 1

    def parts_for(self, size: int, *, split_min: int, part_min: int) -> int:
        """How many parts a file of ``size`` starting now gets; 0: too small to split.

        Its fair share of the connections among the files left, at most the
        idle ones plus its own, and parts of at least ``part_min`` bytes. A
        file given 1 part is still fetched by Range, so that connections
        spared later can split it.
        """
        if size < split_min:
            return 0
        share = self.limit // max(1, self.queued + self.in_flight)
        idle = self.limit - self.in_use
        return max(1, min(share, idle + 1, size // part_min))

    def spare(self) -> int:
        """Connections no one uses while no file waits for one."""
        return 0 if self.queued > 0 else max(0, self.limit - self.in_use)


class RangeIgnoredError(Exception):
    """The server did not answer a part with the range asked for (200, 416, another range)."""

    def __init__(self, url: str, status: int) -> None:
        self.url = url
        self.status = status
        super().__init__(f"{url}: HTTP {status} to a Range request")


@dataclass
class Part:
    """Bytes ``[start, end)`` of the file; ``done`` of them (from ``start``) are on disk."""

    start: int
    end: int  # lowered when the part is split while it is being fetched
    done: int = 0
    accepted: int = 0  # received and handed to the writer (on this run)
    taken: bool = False  # a connection is fetching it (on this run)

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def complete(self) -> bool:
        return self.done >= self.length


@dataclass
class RangeLayout:
    """How a file of ``size`` bytes is split, and how far each part has come."""

    size: int
    parts: list[Part]

    @classmethod
    def plan(cls, size: int, count: int) -> RangeLayout:
        """``count`` contiguous parts of (almost) equal length covering ``size`` bytes."""
        if size < 1 or count < 1:
            raise ValueError(f"cannot split {size} bytes into {count} parts")
        count = min(count, size)
        bounds = [size * i // count for i in range(count + 1)]
        return cls(size, [Part(a, b) for a, b in itertools.pairwise(bounds)])

    @classmethod
    def chunks(cls, size: int, chunk: int) -> RangeLayout:
        """Parts of ``chunk`` bytes (the last one shorter), fetched in order by the connections."""
        return cls.plan(size, max(1, -(-size // max(1, chunk))))

    @property
    def done(self) -> int:
        return sum(part.done for part in self.parts)

    def prefix(self) -> int:
        """How many bytes from the file's start are on disk without a gap."""
        for part in sorted(self.parts, key=lambda p: p.start):
            if not part.complete:
                return part.start + part.done
        return self.size

    def next_pending(self) -> Part | None:
        """The first part no connection has taken and that is not complete."""
        pending = [p for p in self.parts if not p.complete and not p.taken]
        return min(pending, key=lambda p: p.start, default=None)

    def encode(self) -> bytes:
        """The layout as kept on the file (call on the event loop: parts may split)."""
        parts = sorted(self.parts, key=lambda p: p.start)
        return json.dumps(
            {"size": self.size, "parts": [[p.start, p.end, p.done] for p in parts]}
        ).encode()

    def split(self, part_min: int) -> Part | None:
        """Halve what is left of the part with most left; the new second half, or None.

        Only a part with at least ``2 * part_min`` bytes still to come is split.
        """

        def left(part: Part) -> int:
            return part.length - max(part.accepted, part.done)

        largest = max(self.parts, key=left)
        rest = left(largest)
        if rest < 2 * part_min:
            return None
        middle = largest.end - rest // 2
        tail = Part(middle, largest.end)
        largest.end = middle
        self.parts.append(tail)
        return tail

    @classmethod
    def decode(cls, raw: bytes, size: int) -> RangeLayout | None:
        """The layout in ``raw`` if it is well formed and covers exactly ``size`` bytes."""
        try:
            doc = json.loads(raw)
            parts = [Part(int(a), int(b), int(d)) for a, b, d in doc["parts"]]
            recorded = int(doc["size"])
        except (ValueError, TypeError, KeyError):
            return None
        position = 0
        for part in parts:
            if part.start != position or part.end <= part.start:
                return None
            if not 0 <= part.done <= part.length:
                return None
            position = part.end
        if recorded != size or position != size or not parts:
            return None
        return cls(size, parts)


def load_layout(path: Path, size: int) -> RangeLayout | None:
    """The layout kept on partial file ``path``, or None (no file, no or bad state)."""
    try:
        raw = os.getxattr(path, RANGES_XATTR)
    except OSError:
        return None
    return RangeLayout.decode(raw, size)


def save_layout(fd: int, encoded: bytes) -> bool:
    """Keep an encoded layout on the open partial file; False where xattrs are not supported."""
    try:
        os.setxattr(fd, RANGES_XATTR, encoded)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.E2BIG):
            return False
        raise
    return True


def drop_layout(path: Path) -> None:
    """Remove the kept layout from ``path`` (before it is committed as a blob)."""
    try:
        os.removexattr(path, RANGES_XATTR)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOENT, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def hash_file(path: Path) -> str:
    """The sha256 of the file at ``path`` (blocking: run it in a worker thread)."""
    hasher = hashlib.sha256()
    with path.open("rb", buffering=0) as file, hash_buffer() as buffer, memoryview(buffer) as view:
        while count := file.readinto(view):
            hasher.update(view[:count])  # hashlib releases the GIL on large buffers
    return hasher.hexdigest()


def hash_buffer(size: int = _HASH_CHUNK) -> mmap.mmap:
    """A scratch buffer for hashing: anonymous mmap, returned to the kernel on close."""
    return mmap.mmap(-1, size)


class RangeWriter:
    """Writes one part's bytes at their offsets, in batches, off the event loop.

    Follows :class:`common.transfer.http.ByteSink`: ``size`` counts the part's
    bytes accepted (on disk after :meth:`flush`); ``part.done`` those written.
    At most one batch is in flight.
    """

    def __init__(self, fd: int, part: Part, *, batch_size: int) -> None:
        self.size = part.accepted = part.done
        self._fd = fd
        self._part = part
        self._batch_size = batch_size
        self._batch: list[bytes] = []
        self._batched = 0
        self._in_flight: asyncio.Future[None] | None = None

    async def write(self, data: bytes) -> None:
        self._batch.append(data)
        self._batched += len(data)
        self.size += len(data)
        self._part.accepted = self.size
        if self._batched >= self._batch_size:
            await self._hand_off()

    async def flush(self) -> None:
        if self._batch:
            await self._hand_off()
        await self._wait_in_flight()

    async def reset(self) -> None:
        self._batch, self._batched = [], 0
        await self._wait_in_flight()
        self.size = self._part.done = self._part.accepted = 0

    async def close(self) -> None:
        """Drop what is not written yet; wait for the batch in flight."""
        self._batch, self._batched = [], 0
        await self._wait_in_flight()
        self.size = self._part.accepted = self._part.done

    def take(self, view: memoryview) -> int:
        """Write ``view`` at the part's next offset now, in the calling (bulk) thread.

        Returns how many of its bytes fit in the part, which may have been split
        meanwhile. The bytes are claimed (``accepted``) before the part's end is
        read: a split leaves at least its ``part_min`` beyond them, more than one
        receive buffer. Call :meth:`settle` on the event loop afterwards; no batch
        may be pending.
        """
        part = self._part
        part.accepted = part.done + len(view)
        fits = max(0, min(len(view), part.length - part.done))
        written = 0
        while written < fits:
            step = os.pwrite(self._fd, view[written:fits], part.start + part.done)
            written += step
            part.done += step
        part.accepted = part.done
        return fits

    def settle(self) -> None:
        """After :meth:`take`: count what the bulk thread wrote."""
        self.size = self._part.accepted = self._part.done

    async def _hand_off(self) -> None:
        await self._wait_in_flight()
        batch, self._batch, self._batched = self._batch, [], 0
        loop = asyncio.get_running_loop()
        self._in_flight = loop.run_in_executor(None, self._write, batch)

    async def _wait_in_flight(self) -> None:
        in_flight = self._in_flight
        if in_flight is None:
            return
        try:
            await asyncio.shield(in_flight)
        finally:
            if in_flight.done():
                self._in_flight = None

    def _write(self, batch: list[bytes]) -> None:
        part = self._part
        pending = [memoryview(chunk) for chunk in batch if chunk]
        while pending:
            written = os.pwritev(self._fd, pending[:_IOV_MAX], part.start + part.done)
            part.done += written
            while written and pending:
                if written >= len(pending[0]):
                    written -= len(pending.pop(0))
                else:
                    pending[0] = pending[0][written:]
                    written = 0


async def get_part(
    session: aiohttp.ClientSession,
    url: str,
    writer: RangeWriter,
    part: Part,
    *,
    total: int,
    limits: aiohttp.ClientTimeout,
    count: Callable[[int], None],
    pace: Pace,
) -> None:
    """GET the rest of ``part`` into ``writer``: one attempt.

    Raises RangeIgnoredError for an answer that is not the range asked for,
    else what :func:`common.transfer.http.get_into` raises. The part may be
    split meanwhile: reading stops at its (new) end and the connection is
    closed.
    """
    received = 0
    watch = pace.attempt()

    def counted(nbytes: int) -> None:
        nonlocal received
        received += nbytes
        watch.add(nbytes)
        count(nbytes)

    first, last = part.start + writer.size, part.end - 1  # the part may shrink meanwhile
    headers = {"Accept-Encoding": "identity", "Range": f"bytes={first}-{last}"}
    try:
        async with watch:
            if bulk_usable(session, url):
                try:
                    bulk = await open_bulk(url, {**session.headers, **headers}, limits=limits)
                except Unsupported:
                    pass  # the aiohttp path below, unchanged
                else:
                    async with bulk:
                        _check_part_answer(
                            url,
                            bulk.status,
                            bulk.headers,
                            bulk.content_length,
                            first=first,
                            last=last,
                            total=total,
                        )
                        await _pour_part(bulk, writer, part, counted)
                    return
            async with session.get(
                url, headers=headers, timeout=limits, read_bufsize=PART_READ_BUFSIZE
            ) as resp:
                _check_part_answer(
                    url,
                    resp.status,
                    resp.headers,
                    resp.content_length,
                    first=first,
                    last=last,
                    total=total,
                )
                read_more_per_call(resp, PART_READ_BUFSIZE)
                await _read_part(url, resp, writer, part, counted)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        await writer.flush()
        raise translate_error(exc, url=url, body_started=received > 0) from exc
    except UpstreamError:
        await writer.flush()
        raise


def _check_part_answer(
    url: str,
    status: int,
    headers: Mapping[str, str],
    announced: int | None,
    *,
    first: int,
    last: int,
    total: int,
) -> None:
    """Raise unless the answer is a 206 of exactly ``first``-``last`` (see :func:`get_part`)."""
    if status in (200, 416):
        raise RangeIgnoredError(url, status)
    if status != 206:
        raise HTTPStatusError(
            status, url=url, retry_after=parse_retry_after(headers.get("Retry-After"))
        )
    if parse_content_range(headers.get("Content-Range")) not in (
        (first, last, total),
        (first, last, None),
    ):
        raise RangeIgnoredError(url, status)
    if announced is not None and announced != last + 1 - first:
        raise SizeMismatchError(url=url, expected=last + 1 - first, actual=announced)


async def _pour_part(
    bulk: BulkResponse, writer: RangeWriter, part: Part, count: Callable[[int], None]
) -> None:
    """The bulk path's :func:`_read_part`: the body written at its offsets by the bulk thread."""
    try:
        await bulk.pour(part.length - writer.size, writer.take, count)
    finally:
        writer.settle()
    if writer.size < part.length:
        raise TruncatedBodyError(
            f"body ended {part.length - writer.size} bytes short", url=bulk.url
        )


async def _read_part(
    url: str,
    resp: aiohttp.ClientResponse,
    writer: RangeWriter,
    part: Part,
    count: Callable[[int], None],
) -> None:
    async for chunk, _end_of_http_chunk in resp.content.iter_chunks():
        room = part.length - writer.size  # the part may have been split: read this far
        if len(chunk) >= room:
            if room > 0:
                await writer.write(chunk[:room])
                count(room)
            break
        await writer.write(chunk)
        count(len(chunk))
    await writer.flush()
    if writer.size < part.length:
        raise TruncatedBodyError(f"body ended {part.length - writer.size} bytes short", url=url)


@dataclass(frozen=True)
class PartsJob:
    """What :func:`fetch_parts` needs besides the layout: where, how and how patiently."""

    session: aiohttp.ClientSession
    url: str
    path: Path
    timeout: aiohttp.ClientTimeout
    policy: RetryPolicy
    limits: TransferLimits
    batch_size: int
    count: Callable[[int], None]
    log: Any
    budget: ConnectionBudget | None = None
    part_min: int = 32 << 20  # a running part is split only while twice this is left
    connections: int = 1  # requests at once to begin with


class _PartsRun:
    """One call of :func:`fetch_parts`: its connections, requests and running digest.

    Each connection takes the first part not yet taken, in file order, so the
    bytes on disk grow as a prefix that :meth:`follow` hashes while the rest
    arrives. With no part left to take, an idle connection splits the part
    with most left (its second half) so that the parts end together.
    """

    def __init__(self, job: PartsJob, fd: int, layout: RangeLayout) -> None:
        self.job = job
        self.fd = fd
        self.layout = layout
        self.made = 0  # requests, over all parts and their retries
        self.running = 0  # connection tasks not finished
        self.digest: str | None = None

    def start(self, group: asyncio.TaskGroup) -> None:
        """One more connection working through the parts."""
        self.running += 1
        if self.job.budget is not None:
            self.job.budget.in_use += 1
        group.create_task(self._connection())

    def has_work(self) -> bool:
        """A part to take, or one worth splitting."""
        layout = self.layout
        if layout.next_pending() is not None:
            return True
        return any(
            part.length - max(part.accepted, part.done) >= 2 * self.job.part_min
            for part in layout.parts
        )

    async def use_spare(self, group: asyncio.TaskGroup, budget: ConnectionBudget) -> None:
        """While connections run, add one whenever the budget has one spare and there is work."""
        while self.running > 0:
            while budget.spare() > 0 and self.has_work():
                self.start(group)
            await asyncio.sleep(_SPLIT_CHECK_S)

    async def follow(self) -> None:
        """Hash the file's gap-free prefix as it grows; ``digest`` once all is hashed."""
        hasher = hashlib.sha256()
        hashed, size = 0, self.layout.size
        # One buffer per file, reused by every step; unmapped once the last step lets go.
        buffer = hash_buffer()
        while hashed < size:
            prefix = self.layout.prefix()
            if prefix - hashed >= _FOLLOW_STEP or prefix == size:
                hashed = await asyncio.to_thread(
                    _hash_range, self.fd, hasher, hashed, prefix, buffer
                )
            elif self.running == 0:
                return  # parts stopped short: no digest (the caller hashes the file)
            else:
                await asyncio.sleep(_FOLLOW_PAUSE_S)
        self.digest = hasher.hexdigest()

    async def _connection(self) -> None:
        try:
            while True:
                part = self.layout.next_pending()
                if part is None:
                    part = self.layout.split(self.job.part_min)
                    if part is None:
                        return
                    self.job.log.debug(
                        "download_part_split", part_start=part.start, part_end=part.end
                    )
                part.taken = True
                await self._fetch(part)
        finally:
            self.running -= 1
            if self.job.budget is not None:
                self.job.budget.in_use -= 1

    async def _fetch(self, part: Part) -> None:
        job = self.job
        writer = RangeWriter(self.fd, part, batch_size=min(job.batch_size, PART_BATCH))
        pace = Pace(job.limits, url=job.url, size=part.length - part.done)
        plog = job.log.bind(part_start=part.start, part_end=part.end)

        async def attempt() -> None:
            self.made += 1
            if writer.size < part.length:
                await get_part(
                    job.session,
                    job.url,
                    writer,
                    part,
                    total=self.layout.size,
                    limits=job.timeout,
                    count=job.count,
                    pace=pace,
                )

        try:
            await retrying(attempt, job.policy, log=plog, event="download_retrying")
        finally:
            await asyncio.shield(writer.close())


def _hash_range(fd: int, hasher: Any, begin: int, end: int, buffer: mmap.mmap) -> int:
    """Feed bytes ``[begin, end)`` of ``fd`` to ``hasher`` through ``buffer``; returns ``end``."""
    position = begin
    with memoryview(buffer) as view:
        while position < end:
            count = os.preadv(fd, [view[: min(len(view), end - position)]], position)
            if count <= 0:
                raise OSError(f"short read at {position} of a partial file")
            hasher.update(view[:count])  # hashlib releases the GIL on large buffers
            position += count
    return position


async def fetch_parts(job: PartsJob, layout: RangeLayout) -> tuple[int, str | None]:
    """Fetch every unfinished part of ``layout`` into ``job.path``.

    ``job.connections`` requests run at once, each working through the
    parts in file order; connections ``job.budget`` has to spare are added.
    Each part is retried by :func:`common.transfer.retry.retrying` and
    resumed where it stopped. The first part that fails for good cancels the
    others and is raised (RangeIgnoredError included); progress stays on the
    file for a later call. Returns the requests made and the file's sha256,
    hashed while it arrived (None if that could not be done).
    """
    fd = await asyncio.to_thread(_open_sparse, job.path, layout.size)
    run = _PartsRun(job, fd, layout)
    keeps_state = True
    budget = job.budget
    if budget is not None:
        budget.in_use -= 1  # the file's connection: each part request holds its own
    try:
        keeps_state = await asyncio.to_thread(save_layout, fd, layout.encode())
        saver = asyncio.create_task(_keep_saving(fd, layout, keeps_state))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(max(1, job.connections)):
                    if run.has_work():
                        run.start(group)
                group.create_task(run.follow())
                if budget is not None and keeps_state:
                    group.create_task(run.use_spare(group, budget))
        except ExceptionGroup as failed:
            first = failed.exceptions[0]
            for other in failed.exceptions[1:]:
                first.add_note(f"also failed meanwhile: {other!r}")
            raise first from None
        finally:
            saver.cancel()
    finally:
        if budget is not None:
            budget.in_use += 1
        encoded = layout.encode()
        await asyncio.shield(asyncio.to_thread(_close, fd, layout, encoded, keeps_state))
    return run.made, run.digest


async def _keep_saving(fd: int, layout: RangeLayout, keeps_state: bool) -> None:
    """Every second: write back what arrived, then record it as done.

    The writeback overlaps the download, so the store's fsync at commit has
    little left to do (measured in bench/RESULTS.md); and progress is recorded
    only once its bytes are on disk.
    """
    while True:
        await asyncio.sleep(_SAVE_EVERY_S)
        encoded = layout.encode()  # before the sync: it may only claim synced bytes
        await asyncio.to_thread(_sync_and_save, fd, encoded, keeps_state)


def _sync_and_save(fd: int, encoded: bytes, keeps_state: bool) -> None:
    os.fdatasync(fd)
    if keeps_state:
        save_layout(fd, encoded)


def _open_sparse(path: Path, size: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)  # sparse: the store's commit checks the size
    except BaseException:
        os.close(fd)
        raise
    return fd


def _close(fd: int, layout: RangeLayout, encoded: bytes, keeps_state: bool) -> None:
    try:
        if keeps_state:
            save_layout(fd, encoded)
        elif not all(part.complete for part in layout.parts):
            # No state kept: only the first part's finished bytes are a resumable prefix.
            os.ftruncate(fd, layout.parts[0].done)
    finally:
        os.close(fd)
