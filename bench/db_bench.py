"""Benchmark: ``GET boot-resources/`` with 1,000 resources, on SQLite and on PostgreSQL.

Two databases are made and filled alike through the repositories: 1,000 synthetic
synced resources with complete sets (3 files each) by ``region.db.imports.write_wanted``
and a user with an API key by ``region.db.users``. SQLite is a file in a temp dir;
PostgreSQL is a throwaway server (tests/fakes/postgres.py: initdb + postgres on
127.0.0.1, fsync off as in the tests). Each database is served by its own region API
process (this script with ``--serve``: the region's boot-resources handlers behind the
daemon's middlewares, on the region's event loop, uvloop) and read over HTTP with one
keep-alive connection per server (Python http.client), after a warm-up. Rounds are
interleaved (SQLite then PostgreSQL, then the other way round, ...), each after the
machine is quiet (bounded wait); p50/p95/p99 over every request. Target p50 ≤ 30 ms on
both. When a target is missed (or with ``--profile``) that engine's server runs once
more under cProfile (asyncio's loop) and the top functions are printed and recorded.

Run: ``.venv/bin/python bench/db_bench.py [--rounds 10] [--gets 20] [--no-results]``
(or ``make bench-db``). Needs PostgreSQL's initdb (``make postgresql-tools``). Data
goes to /tmp/bdb*; every process started is stopped at the end, also on Ctrl-C.
Results go to the section below of bench/RESULTS.md (its ``### Analysis`` is kept).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    REPO,
    BenchError,
    Pacer,
    Verdict,
    load_average,
    machine,
    percentile,
    process_cpu_s,
    synthetic_sets,
    utc_date,
    write_section,
)

SECTION = "## boot-resources read on SQLite and PostgreSQL (bench/db_bench.py)"
API = "/MAAS/api/2.0"
TARGET_P50_MS = 30.0
RESOURCES = 1000
WARMUP_GETS = 10
START_TIMEOUT_S = 60.0
ENGINES = ("sqlite", "postgresql")
# A third server over the same PostgreSQL database with one change, patched into that
# process only: each statement's prepared form is reused (asyncpg's statement cache)
# instead of being prepared again, one round trip and one server-side parse fewer.
CACHED = "postgresql+cache"
CACHE_ENV = "DB_BENCH_PG_STATEMENT_CACHE"


# ---------------------------------------------------------------- the region side


def seed(target: str) -> str:
    """Fill ``target`` with RESOURCES resources and a user; that user's key ``ck:tk:ts``."""
    from region.db import users as repo_users  # noqa: PLC0415 - the seeding needs the region's code
    from region.db.connection import open_db  # noqa: PLC0415
    from region.db.imports import write_wanted  # noqa: PLC0415

    wanted = synthetic_sets(RESOURCES)

    async def write() -> str:
        async with open_db(target) as db:
            await write_wanted(db, wanted, {f.sha256: f.size for ws in wanted for f in ws.files})
            user = await repo_users.create_user(db, "bench", is_admin=True)
            return ":".join(await repo_users.create_token(db, user.id))

    return asyncio.run(write())


def use_statement_cache() -> None:
    """Patch PgConnection.execute to reuse asyncpg's cached prepared statements (bench only)."""
    from region.db import postgres  # noqa: PLC0415 - the child only
    from region.db.engine import Cursor, Params, Pending, numbered_placeholders  # noqa: PLC0415

    def execute(self: postgres.PgConnection, sql: str, params: Params = ()) -> Pending:
        async def run() -> Cursor:
            query = numbered_placeholders(sql)
            stmt = await postgres._guarded(self.raw._prepare(query, use_cache=True))
            rows = await postgres._guarded(stmt.fetch(*params))
            returning = bool(rows) and "RETURNING" in sql.upper()
            count = postgres._rowcount(stmt.get_statusmsg())
            return Cursor(rows, count, int(rows[0][0]) if returning else None)

        return Pending(run)

    postgres.PgConnection.execute = execute  # type: ignore[method-assign]


def serve(target: str, root: Path, port_file: Path) -> None:
    """Serve boot-resources over ``target`` on 127.0.0.1 until SIGTERM (child-process mode)."""
    import aiohttp  # noqa: PLC0415 - the region's code, in the child only
    from aiohttp import web  # noqa: PLC0415

    from common.ops.runtime import run  # noqa: PLC0415
    from common.storage.blobstore import BlobStore  # noqa: PLC0415
    from common.storage.snapshot import SnapshotPublisher  # noqa: PLC0415
    from region.api import boot_resources  # noqa: PLC0415
    from region.api.auth import auth_middleware  # noqa: PLC0415
    from region.api.http import api_hash_middleware, maas_errors  # noqa: PLC0415
    from region.api.registry import add_routes  # noqa: PLC0415
    from region.config import RegionConfig  # noqa: PLC0415
    from region.context import CTX, RegionContext  # noqa: PLC0415
    from region.db.connection import open_db  # noqa: PLC0415
    from region.main import REGION_LOOP  # noqa: PLC0415
    from tests.integration.region.api_harness import (  # noqa: PLC0415
        IdleImporter,
        RecordingCatalogue,
        region_signing_key,
    )

    if os.environ.get(CACHE_ENV) == "1":
        use_statement_cache()

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        store = BlobStore(root / "store")
        with region_signing_key() as key:
            async with open_db(target) as db, aiohttp.ClientSession() as session:
                ctx = RegionContext(
                    data_dir=root,
                    db=db,
                    session=session,
                    store=store,
                    publisher=SnapshotPublisher(root / "stream", store),
                    region_key=key,
                    importer=IdleImporter(),
                    catalogue=RecordingCatalogue(),
                    config=RegionConfig(data_dir=root),
                )
                app = web.Application(middlewares=[maas_errors, auth_middleware])
                app.middlewares.insert(0, api_hash_middleware("0" * 40))
                app[CTX] = ctx
                add_routes(app, list(boot_resources.HANDLERS))
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                port = runner.addresses[0][1]
                await asyncio.to_thread(port_file.write_text, str(port))
                await stop.wait()
                await runner.cleanup()

    run(main(), default_loop=REGION_LOOP)


# ---------------------------------------------------------------- the client side


@dataclass
class Server:
    """One region API process over one database."""

    engine: str
    proc: subprocess.Popen[bytes]
    port: int
    key: str
    conn: http.client.HTTPConnection = field(init=False)
    headers: dict[str, str] = field(init=False)
    ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    body_bytes: int = 0
    resources: int = 0

    def __post_init__(self) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        consumer, token, secret = self.key.split(":")
        self.headers = {
            "Authorization": (
                f'OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", '
                f'oauth_consumer_key="{consumer}", oauth_token="{token}", '
                f'oauth_signature="%26{secret}", oauth_nonce="1", oauth_timestamp="1"'
            )
        }

    def get(self) -> bytes:
        self.conn.request("GET", f"{API}/boot-resources/", headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise BenchError(
                f"{self.engine}: GET boot-resources/: HTTP {resp.status}: {body[:300]!r}"
            )
        return body

    def timed(self, count: int) -> list[float]:
        cpu0 = process_cpu_s([self.proc.pid], children=False)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            self.get()
            times.append((time.perf_counter() - started) * 1000)
        self.cpu_s += process_cpu_s([self.proc.pid], children=False) - cpu0
        return times

    def pct(self, p: float) -> float:
        return percentile(self.ms, p)


@contextmanager
def region_api(
    engine: str, target: str, key: str, root: Path, *, profile_to: Path | None = None
) -> Iterator[Server]:
    """A ``--serve`` child over ``target``; stopped (SIGTERM, then SIGKILL) after."""
    port_file = root / f"{engine}.port"
    port_file.unlink(missing_ok=True)
    prefix = ["-m", "cProfile", "-o", str(profile_to)] if profile_to else []
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'bench'}"}
    if profile_to:
        env["BOOTSYNC_EVENT_LOOP"] = "asyncio"  # cProfile cannot see inside uvloop
    if engine == CACHED:
        env[CACHE_ENV] = "1"
    argv = [
        sys.executable,
        *prefix,
        __file__,
        "--serve",
        target,
        "--root",
        str(root),
        "--port-file",
        str(port_file),
    ]
    log = (root / f"{engine}-server.log").open("wb")
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_file.exists() or not port_file.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / f"{engine}-server.log").read_text()[-2000:]
                raise BenchError(f"{engine} region API did not start: {tail}")
            time.sleep(0.05)
        server = Server(engine, proc, int(port_file.read_text()), key)
        yield server
        server.conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(servers: list[Server], rounds: int, gets: int, pacer: Pacer) -> list[dict[str, float]]:
    """Warm up, then ``rounds`` interleaved rounds of ``gets`` each; per-round p50s."""
    for server in servers:
        body = b""
        for _ in range(WARMUP_GETS):
            body = server.get()
        server.body_bytes, server.resources = len(body), len(json.loads(body))
        if server.resources != RESOURCES:
            raise BenchError(
                f"{server.engine}: {server.resources} resources listed, not {RESOURCES}"
            )
    per_round = []
    for n in range(rounds):
        pacer.settle()
        medians = {}
        for server in servers if n % 2 == 0 else list(reversed(servers)):
            times = server.timed(gets)
            server.ms += times
            medians[server.engine] = percentile(times, 50)
        per_round.append(medians)
        print(
            f"  round {n + 1}: " + ", ".join(f"{e} p50 {m:.1f} ms" for e, m in medians.items()),
            flush=True,
        )
    return per_round


def profile_text(stats_file: Path, title: str, lines: int = 20) -> str:
    """The top functions by own time, then by cumulative time, of a cProfile dump."""
    parts = [title]
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(str(stats_file), stream=out).strip_dirs().sort_stats(key).print_stats(lines)
        body = out.getvalue()
        parts += ["", f"Top by {key}:", "", body[body.find("   ncalls") :].rstrip()]
    return "\n".join(parts)


# ---------------------------------------------------------------- reporting


def table(servers: list[Server], gets_total: int) -> str:
    lines = [
        "| engine | resources | response | requests | p50 ms | p95 ms | p99 ms | mean ms | max ms | region CPU ms/request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in servers:
        lines.append(
            f"| {s.engine} | {s.resources} | {s.body_bytes / 1024:.0f} KiB | {len(s.ms)} | "
            f"{s.pct(50):.1f} | {s.pct(95):.1f} | {s.pct(99):.1f} | {sum(s.ms) / len(s.ms):.1f} | "
            f"{max(s.ms):.1f} | {s.cpu_s * 1000 / gets_total:.1f} |"
        )
    return "\n".join(lines)


def round_table(per_round: list[dict[str, float]]) -> str:
    lines = [
        "| round | " + " | ".join(f"{e} p50 ms" for e in per_round[0]) + " |",
        "|---:|" + "---:|" * len(per_round[0]),
    ]
    for n, medians in enumerate(per_round, start=1):
        lines.append(f"| {n} | " + " | ".join(f"{medians[e]:.1f}" for e in per_round[0]) + " |")
    return "\n".join(lines)


def section(
    args: argparse.Namespace,
    servers: list[Server],
    *,
    per_round: list[dict[str, float]],
    found: list[Verdict],
    profiles: list[str],
    pg_version: str,
) -> str:
    parts = [
        SECTION,
        "",
        f"Run {utc_date()} with `.venv/bin/python bench/db_bench.py --rounds {args.rounds} "
        f"--gets {args.gets}`.",
        f"Machine: {machine()}, load average {load_average()} at the start; {pg_version}.",
        "",
        f"{RESOURCES} synthetic synced resources (3 files each, complete sets) and an admin key "
        "written through the repositories (`region.db.imports.write_wanted`, `region.db.users`) "
        "into a SQLite file and into a database of a throwaway PostgreSQL server on 127.0.0.1 "
        "(tests/fakes/postgres.py: fsync off). Each is served by its own process running the "
        "region's boot-resources handlers behind the daemon's middlewares on uvloop (readers: "
        "4 SQLite connections / a pool of 5). `GET /MAAS/api/2.0/boot-resources/` over one "
        f"keep-alive connection per server after {WARMUP_GETS} warm-up requests; {args.rounds} "
        f"interleaved rounds of {args.gets} requests (order swapped every round), each after "
        "the machine is quiet (bounded wait); time to the last byte of the body in the client "
        "(http.client). Region CPU: the server process's user+system time per request.",
        "",
        table(servers, args.rounds * args.gets),
        "",
        "Per round (p50 of its requests):",
        "",
        round_table(per_round),
        "",
        *(f"- {v.line()}" for v in found),
    ]
    for profile in profiles:
        parts += ["", "```", profile, "```"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--gets", type=int, default=20, help="requests per engine per round")
    parser.add_argument(
        "--budget", type=float, default=90.0, help="seconds of waiting for quiet, in all"
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile both servers even when on target"
    )
    parser.add_argument(
        "--no-results", action="store_true", help="print only; leave bench/RESULTS.md alone"
    )
    parser.add_argument(
        "--cache-variant",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"also serve PostgreSQL with prepared statements reused ({CACHED})",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def bench(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(REPO))  # tests/fakes/postgres.py
    from tests.fakes.postgres import PostgresServer, pg_bin  # noqa: PLC0415

    if pg_bin("initdb") is None:
        raise BenchError("initdb is missing: run `make postgresql-tools`")
    root = Path(tempfile.mkdtemp(prefix="bdb", dir="/tmp"))
    pg = PostgresServer()
    try:
        pg.start()
        postgres = pg_bin("postgres")
        version = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        targets = {
            "sqlite": f"sqlite://{root / 'region.db'}",
            "postgresql": asyncio.run(pg.new_database()),
        }
        print(f"seeding {RESOURCES} resources into each database ...", flush=True)
        keys = {engine: seed(target) for engine, target in targets.items()}
        targets[CACHED], keys[CACHED] = targets["postgresql"], keys["postgresql"]
        with ExitStack() as running:
            servers = [
                running.enter_context(region_api(engine, targets[engine], keys[engine], root))
                for engine in (*ENGINES, *((CACHED,) if args.cache_variant else ()))
            ]
            per_round = measure(servers, args.rounds, args.gets, Pacer(args.budget))
        found = [
            Verdict(
                f"boot-resources read with {RESOURCES} resources on {s.engine}, p50",
                f"{s.pct(50):.1f} ms (p95 {s.pct(95):.1f} ms)",
                f"≤ {TARGET_P50_MS:.0f} ms",
                s.pct(50) <= TARGET_P50_MS,
            )
            for s in servers
        ]
        print(table(servers, args.rounds * args.gets), flush=True)
        for verdict in found:
            print(verdict.line(), flush=True)
        profiles = []
        for server, verdict in zip(servers, found, strict=True):
            if server.engine not in ENGINES or (verdict.ok and not args.profile):
                continue
            stats = root / f"{server.engine}.pstats"
            with region_api(
                server.engine, targets[server.engine], server.key, root, profile_to=stats
            ) as prof:
                for _ in range(WARMUP_GETS):
                    prof.get()
                prof.ms = prof.timed(min(100, args.rounds * args.gets))
            profiles.append(
                profile_text(
                    stats,
                    f"cProfile (asyncio loop) of the {server.engine} region API serving "
                    f"{len(prof.ms)} GET boot-resources/ ({RESOURCES} resources): p50 "
                    f"{prof.pct(50):.1f} ms under the profiler",
                )
            )
            print(profiles[-1], flush=True)
        text = section(
            args, servers, per_round=per_round, found=found, profiles=profiles, pg_version=version
        )
        if not args.no_results:
            write_section(SECTION, text)
            print(f"results written to {REPO / 'bench' / 'RESULTS.md'}", flush=True)
        return (
            0
            if all(v.ok for v, s in zip(found, servers, strict=True) if s.engine in ENGINES)
            else 1
        )
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    args = parse_args()
    if args.serve:
        sys.path.insert(0, str(REPO))
        serve(args.serve, args.root, args.port_file)
        return 0
    try:
        return bench(args)
    except BenchError as exc:
        print(f"db_bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
