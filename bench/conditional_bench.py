"""Conditional metadata reads: a full read of a stream's metadata vs a no-change re-read.

Serves a signed sample stream with aiohttp's static file handler (which sends
ETag and Last-Modified and answers conditional GETs with 304, as nginx and
images.maas.io's CDN do) and reads its metadata with the shared
``read_stream`` three times per cache: with no cache (a full read), through an
empty cache (a first run: full read, documents kept), then again through the
filled cache (the hourly run with nothing new). The caches are the mirror's
(``.bootsync/http-cache/``) and the region's (its SQLite database). Prints the
bytes the server sent (status lines, headers and bodies) and the wall time of
each read, median of ``--runs``. Usage:

    python bench/conditional_bench.py [--versions N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common.mirror.http_cache import MirrorDocumentCache  # noqa: E402
from common.mirror.samplestream import write_sample_stream  # noqa: E402
from common.transfer.fetch import DocumentCache  # noqa: E402
from common.transfer.http import make_session  # noqa: E402
from common.transfer.streams import (  # noqa: E402
    SIGNED_INDEX_PATH,
    TrustPolicy,
    http_documents,
    keep_verified,
    read_stream,
)
from common.trust.keyrings import aload_keyring  # noqa: E402
from region.db.connection import open_db  # noqa: E402
from region.db.http_cache import DatabaseDocumentCache  # noqa: E402


class Counter:
    """Bytes the server sent: status line, headers, body (Content-Length)."""

    def __init__(self) -> None:
        self.sent = 0
        self.requests = 0

    async def on_prepare(self, _request: web.Request, response: web.StreamResponse) -> None:
        """aiohttp's on_response_prepare signal: count what this response puts on the wire."""
        self.requests += 1
        self.sent += len(f"HTTP/1.1 {response.status} {response.reason}\r\n") + 2
        self.sent += sum(len(k) + len(v) + 4 for k, v in response.headers.items())
        if response.status == 200 and response.content_length is not None:
            self.sent += response.content_length


async def _timed(counter: Counter, read: Callable[[], Awaitable[object]]) -> tuple[int, int, float]:
    sent, asked = counter.sent, counter.requests
    began = time.perf_counter()
    await read()
    return counter.sent - sent, counter.requests - asked, time.perf_counter() - began


async def bench(versions: int, runs: int) -> None:
    """Measure and print the table."""
    with tempfile.TemporaryDirectory(prefix="bootsync-conditional-") as tmp:
        work = Path(tmp)
        stream = await asyncio.to_thread(
            write_sample_stream, work / "stream", file_size=4096, versions=versions
        )
        docs = sorted((stream.root / "streams" / "v1").glob("*.sjson"))
        print(f"stream: {len(docs)} signed documents, {sum(d.stat().st_size for d in docs)} bytes")
        counter = Counter()
        app = web.Application()
        app.on_response_prepare.append(counter.on_prepare)
        app.router.add_static("/", stream.root)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}/"
        trust = TrustPolicy(await aload_keyring(stream.keyring))
        rows: dict[str, list[tuple[int, int, float]]] = {}
        try:
            async with (
                make_session(user_agent="bootsync-bench") as session,
                open_db(work / "region.db") as db,
            ):
                for run in range(runs):
                    caches: dict[str, DocumentCache] = {
                        "mirror": MirrorDocumentCache(work / f"mirror-{run}"),
                        "region": DatabaseDocumentCache(db),
                    }
                    if run:  # the region's cache lives in one database: empty it per run
                        async with db.write() as conn:
                            await conn.execute("DELETE FROM http_cache")

                    async def plain() -> object:
                        return await read_stream(
                            http_documents(session, base), SIGNED_INDEX_PATH, trust
                        )

                    rows.setdefault("full read (no cache)", []).append(await _timed(counter, plain))
                    for name, cache in caches.items():

                        async def cached(cache: DocumentCache = cache) -> object:
                            return await read_stream(
                                http_documents(session, base, cache=cache),
                                SIGNED_INDEX_PATH,
                                trust,
                                on_verified=keep_verified(cache),
                            )

                        rows.setdefault(f"{name}: first run", []).append(
                            await _timed(counter, cached)
                        )
                        rows.setdefault(f"{name}: no change", []).append(
                            await _timed(counter, cached)
                        )
        finally:
            await runner.cleanup()
    print(f"{'read':28} {'requests':>8} {'bytes sent':>12} {'median s':>9}")
    for name, values in rows.items():
        print(
            f"{name:28} {values[0][1]:8d} {values[0][0]:12d} "
            f"{statistics.median(v[2] for v in values):9.3f}"
        )


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=60, help="versions per product")
    parser.add_argument("--runs", type=int, default=5, help="repetitions (medians)")
    args = parser.parse_args()
    asyncio.run(bench(args.versions, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
