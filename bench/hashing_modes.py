"""Benchmark: two ways to write and hash a download off the event loop.

(a) thread: one dedicated thread per download, fed 1 MiB batches through a
    bounded queue (depth 4); the loop waits only when the queue is full.
(b) to_thread: each 1 MiB batch is written and hashed by one executor hop,
    overlapping with receiving the next batch (at most one in flight). This is
    :class:`common.transfer.download.PartialWriter`, the design bootsync ships.

An aiohttp server in a separate process serves random files from memory on
127.0.0.1; the client downloads all of them at concurrency 1, 8 and 32 with
each design, checks every sha256, and prints MB/s (min / median / max over the
repeats). Run: ``.venv/bin/python -m bench.hashing_modes [--files N --size-mib M]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import queue
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web

from common.transfer.download import PartialWriter
from common.transfer.workers import run_bounded

BATCH = 1 << 20
DEPTH = 4


def make_file(index: int, size: int) -> bytes:
    return random.Random(index).randbytes(size)


def serve(port_out: multiprocessing.Queue[int], files: int, size: int) -> None:
    """Server process: serve /f<i> from memory until killed."""
    bodies = {f"/f{i}": make_file(i, size) for i in range(files)}

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=bodies[request.path])

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{name}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


class Sink(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def finish(self) -> str: ...


class ToThreadSink:
    """Design (b): the shipped PartialWriter."""

    def __init__(self, path: Path) -> None:
        self._writer = PartialWriter(path, batch_size=BATCH)

    async def start(self) -> None:
        await self._writer.open()

    async def write(self, data: bytes) -> None:
        await self._writer.write(data)

    async def finish(self) -> str:
        await self._writer.flush()
        await self._writer.close()
        return self._writer.hexdigest()


class ThreadSink:
    """Design (a): a dedicated thread per download behind a bounded queue."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(DEPTH)
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._done: asyncio.Future[str] = self._loop.create_future()
        self._batch: list[bytes] = []
        self._batched = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def start(self) -> None:
        self._thread.start()

    async def write(self, data: bytes) -> None:
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= BATCH:
            await self._send()

    async def _send(self) -> None:
        await self._slots.acquire()
        self._queue.put(b"".join(self._batch))
        self._batch, self._batched = [], 0

    async def finish(self) -> str:
        if self._batch:
            await self._send()
        self._queue.put(None)
        return await self._done

    def _run(self) -> None:
        hasher = hashlib.sha256()
        try:
            with self._path.open("wb", buffering=0) as out:
                while (item := self._queue.get()) is not None:
                    hasher.update(item)
                    out.write(item)
                    self._loop.call_soon_threadsafe(self._slots.release)
            self._loop.call_soon_threadsafe(self._done.set_result, hasher.hexdigest())
        except OSError as exc:
            self._loop.call_soon_threadsafe(self._done.set_exception, exc)


class StartableSink(Sink, Protocol):
    async def start(self) -> None: ...


async def run_once(
    base: str,
    make_sink: Callable[[Path], StartableSink],
    *,
    digests: list[str],
    concurrency: int,
    workdir: Path,
) -> float:
    """Download every file once; return MB/s."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def fetch(index: int) -> int:
            sink = make_sink(workdir / f"f{index}.part")
            await sink.start()
            async with session.get(f"{base}/f{index}") as resp:
                async for chunk in resp.content.iter_any():
                    await sink.write(chunk)
            digest = await sink.finish()
            if digest != digests[index]:
                raise RuntimeError(f"f{index}: digest mismatch")
            return resp.content_length or 0

        started = time.perf_counter()
        sizes = await run_bounded(range(len(digests)), fetch, concurrency)
        elapsed = time.perf_counter() - started
    return sum(sizes) / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib << 20
    digests = [hashlib.sha256(make_file(i, size)).hexdigest() for i in range(args.files)]

    ctx = multiprocessing.get_context("spawn")
    port_out: multiprocessing.Queue[int] = ctx.Queue()
    server = ctx.Process(target=serve, args=(port_out, args.files, size), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{port_out.get(timeout=60)}"
    modes: dict[str, Callable[[Path], StartableSink]] = {
        "a: thread per download": ThreadSink,
        "b: to_thread per batch": ToThreadSink,
    }
    print(
        f"{args.files} files x {args.size_mib} MiB, batch {BATCH >> 20} MiB, "
        f"nproc {os.cpu_count()}, {args.repeat} repeats; MB/s min / median / max"
    )
    try:
        for concurrency in (1, 8, 32):
            rates: dict[str, list[float]] = {name: [] for name in modes}
            for _ in range(args.repeat):  # modes interleaved, so drift hits both alike
                for name, sink in modes.items():
                    workdir = Path(tempfile.mkdtemp(prefix="bench-hash-"))
                    try:
                        rates[name].append(
                            asyncio.run(
                                run_once(
                                    base,
                                    sink,
                                    digests=digests,
                                    concurrency=concurrency,
                                    workdir=workdir,
                                )
                            )
                        )
                    finally:
                        shutil.rmtree(workdir)
            for name, got in rates.items():
                print(
                    f"concurrency {concurrency:>2}  {name:<24} {min(got):7.0f} "
                    f"{statistics.median(got):7.0f} {max(got):7.0f}"
                )
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
