"""Benchmark: the region serving large files against nginx, per event loop and file sender.

The stream files (16 x 25 MiB and one 1 GiB file of random bytes, reused when
present) sit in a snapshot directory behind a ``current`` symlink, as the region
lays them out. They are served on 127.0.0.1 by:

* nginx (sendfile on, tcp_nopush off, 2 workers, no access log): the reference;
* the region's stream routes (``region.web.add_routes``) in a separate process,
  once per design: FileResponse on asyncio's loop (``loop.sendfile``), on
  uvloop (no ``loop.sendfile``: read in a thread and write), and
  ``common.storage.fileserve.SendfileResponse`` (``os.sendfile`` in worker threads) on
  uvloop and on asyncio. The child swaps the class the region's handler
  builds, which is exactly the one-line wiring change.

Clients: 8 curl processes at once, each fetching every 25 MiB file once over one
keep-alive connection, and one curl fetching the 1 GiB file; all to /dev/null.
Each server is probed first (a sha256-checked download, Range, HEAD, ETag → 304).
wrk (installed with apt-get if missing) also measures small requests, where the
event loop shows: an in-memory JSON handler (the API's shape) and a 2 KiB stream
file. A cold case drops the 1 GiB file from the page cache (posix_fadvise on that
file only) and times API pings while one curl fetches it: a server that reads the
disk on its event loop stalls them. CPU seconds per GiB (server and clients) are
read from /proc and rusage. ``--repeat`` rounds, servers interleaved, each sample
after the shared machine is quiet (bounded wait); medians and per-run ratios to
nginx are printed, with PASS/MISS, and written to bench/RESULTS.md.

Run: ``.venv/bin/python bench/serve_bench.py [--repeat 3] [--work DIR] [--no-results]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: the repo's packages for the server children

RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Region file serving vs nginx (event loop choice)"
PREFIX = "/MAAS/images-stream/"
MIB = 1 << 20
SMALL_COUNT, SMALL_SIZE, LARGE_SIZE = 16, 25 * MIB, 1 << 30
CLIENTS = 8
SINGLE_FETCHES = 3  # one client fetches the 1 GiB file this many times per run: less noise
TARGET_PARALLEL, TARGET_SINGLE = 1.0, 0.9
CURL_TIMEOUT_S = 120
WRK_SECONDS = 2
# The machine may be shared (see Sampler): a sample waits up to QUIET_WAIT_S for the
# CPUs to be less than QUIET_BUSY busy, and is taken again when other processes used
# more than that share meanwhile; waits and retakes spend at most QUIET_BUDGET_S per run.
QUIET_BUSY = 0.05
QUIET_WAIT_S = 20.0
QUIET_BUDGET_S = 240.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Design:
    key: str
    label: str
    loop: str = ""  # empty for nginx
    sendfile_response: bool = False
    threads: int = 0  # SendfileResponse's pool size; 0 keeps the module's default


DESIGNS = (
    Design("nginx", "nginx, 2 workers (reference)"),
    Design("asyncio", "asyncio loop + FileResponse (loop.sendfile)", "asyncio"),
    Design("uvloop", "uvloop + FileResponse (read in thread + write)", "uvloop"),
    Design("uvloop+sf", "uvloop + SendfileResponse (os.sendfile in workers)", "uvloop", True),
    Design("asyncio+sf", "asyncio loop + SendfileResponse", "asyncio", True),
)
# Run only when named in --designs: SendfileResponse's pool size (default 4 per CPU).
POOL_DESIGNS = tuple(
    Design(f"uvloop+sf{n}", f"uvloop + SendfileResponse, {n} threads", "uvloop", True, n)
    for n in (1, 2, 16)
)
FILE_CASES = ("parallel", "single", "cold")
LOOP_CASES = ("api", "small", "cold_pings", "cold_p99", "cold_max")
LATENCY_CASES = ("cold_p99", "cold_max")  # lower is better, no ratio shown
CASE_TITLES = {
    "parallel": f"{CLIENTS} clients x {SMALL_COUNT} x 25 MiB (MiB/s)",
    "single": f"1 client x 1 GiB, {SINGLE_FETCHES} times (MiB/s)",
    "cold": "1 GiB not in page cache (MiB/s)",
    "api": "API JSON handler (req/s)",
    "small": "2 KiB stream file (req/s)",
    "cold_pings": "API pings answered during the cold 1 GiB (per s)",
    "cold_p99": "API p99 during the cold 1 GiB (ms)",
    "cold_max": "API worst during the cold 1 GiB (ms)",
}
CPU_CASES = ("parallel", "single")


class BenchError(Exception):
    """The benchmark could not run or a server answered wrongly."""


@dataclass
class Row:
    design: Design
    samples: dict[str, list[float]] = field(default_factory=dict)
    # CPU seconds per GiB served, per run: (server, clients)
    cpu: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def median(self, case: str) -> float | None:
        values = self.samples.get(case)
        return statistics.median(values) if values else None


# ---------------------------------------------------------------- files


@dataclass(frozen=True)
class Stream:
    root: Path  # holds current -> snapshots/bench
    small: list[str]  # paths relative to current
    large: str
    index: str


def make_stream(work: Path) -> Stream:
    """The stream files under ``work/stream`` (random bytes; reused when their sizes match)."""
    root = work / "stream"
    snap = root / "snapshots" / "bench"
    (snap / "images").mkdir(parents=True, exist_ok=True)
    wanted = {f"images/small-{n:02d}.bin": SMALL_SIZE for n in range(SMALL_COUNT)}
    wanted["images/large.bin"] = LARGE_SIZE
    for rel, size in wanted.items():
        path = snap / rel
        if path.is_file() and path.stat().st_size == size:
            continue
        print(f"writing {path} ({size // MIB} MiB)", flush=True)
        with path.open("wb") as out:
            for _ in range(size // (16 * MIB)):
                out.write(os.urandom(16 * MIB))
            out.write(os.urandom(size % (16 * MIB)))
    index = "streams/v1/index.json"
    (snap / "streams/v1").mkdir(parents=True, exist_ok=True)
    (snap / index).write_text('{"format": "index:1.0", "index": {}}\n' + " " * 2000 + "\n")
    (root / "region-keyring.gpg").write_bytes(b"bench keyring\n")
    link = root / "current"
    if not link.is_symlink():
        link.symlink_to(Path("snapshots") / "bench")
    for rel in wanted:  # warm the page cache: every server reads from memory
        with (root / "current" / rel).open("rb") as src:
            while src.read(16 * MIB):
                pass
    return Stream(
        root, sorted(r for r in wanted if r != "images/large.bin"), "images/large.bin", index
    )


# ---------------------------------------------------------------- servers


def ensure_program(name: str, package: str) -> Path | None:
    """``name`` on PATH (or /usr/sbin), installed with apt-get when missing; None if that fails."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found:
        return Path(found)
    print(f"{name} missing: apt-get install -y {package}", flush=True)
    install = ["apt-get", "install", "-y", package]
    if subprocess.run(install, check=False, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], check=False, capture_output=True)
        subprocess.run(install, check=False, capture_output=True)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    return Path(found) if found else None


NGINX_CONF = """\
{user}worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush off;
    keepalive_requests 10000;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /api/ping {{ default_type application/json; return 200 '{{"ok": true}}'; }}
        location {url_prefix} {{ alias {root}/current/; }}
    }}
}}
"""


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited ({proc.returncode})")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/ping")
            conn.getresponse().read()
            conn.close()
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"{what} did not answer on 127.0.0.1:{port}") from None
            time.sleep(0.05)
        else:
            return


def free_port() -> int:
    import socket  # noqa: PLC0415 - only the nginx launcher needs it

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID, SIGKILL to its process group after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def nginx_serving(nginx: Path, stream: Stream, prefix: Path) -> Iterator[tuple[int, int]]:
    """nginx serving the stream on a free loopback port; yields (port, pid); stopped by PID."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    # As root, the workers would drop to "nobody", who may not read the work dir.
    user = f"user {pwd.getpwuid(0).pw_name};\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(user=user, prefix=prefix, port=port, root=stream.root, url_prefix=PREFIX)
    )
    with (prefix / "nginx.out").open("wb") as log:
        proc = subprocess.Popen(
            [str(nginx), "-p", str(prefix), "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_listening(port, proc, "nginx")
            yield port, proc.pid
        finally:
            stop(proc)


@contextmanager
def region_serving(design: Design, stream: Stream, logs: Path) -> Iterator[tuple[int, int]]:
    """The region's stream routes in a child process on ``design``'s loop; yields (port, pid)."""
    env = {**os.environ, "BOOTSYNC_EVENT_LOOP": design.loop}
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve", str(stream.root)]
    if design.sendfile_response:
        argv.append("--sendfile-response")
    if design.threads:
        argv += ["--sendfile-threads", str(design.threads)]
    with (logs / f"server-{design.key}.log").open("wb") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=log, start_new_session=True
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            if not line.startswith("port "):
                raise BenchError(f"server {design.key} did not start; see {log.name}")
            port = int(line.split()[1])
            wait_listening(port, proc, f"server {design.key}")
            yield port, proc.pid
        finally:
            stop(proc)


def serve_child(root: Path, *, sendfile_response: bool, threads: int) -> None:
    """Child process: serve the region's routes on the loop $BOOTSYNC_EVENT_LOOP names."""
    from aiohttp import web, web_fileresponse  # noqa: PLC0415 - the parent never imports it

    from common.ops.runtime import chosen_loop, run  # noqa: PLC0415
    from common.storage import fileserve  # noqa: PLC0415
    from region import web as region_web  # noqa: PLC0415

    # The region's handler builds `web.FileResponse(...)` (or, once wired,
    # `SendfileResponse(...)`); pointing both names at the design's class is the same
    # change as the wiring. /bench/sendfile-used lets the parent check it took effect.
    if threads:
        fileserve.SENDFILE_THREADS = threads
    chosen = fileserve.SendfileResponse if sendfile_response else web_fileresponse.FileResponse
    web.FileResponse = chosen  # type: ignore[misc]
    if "SendfileResponse" in vars(region_web):
        vars(region_web)["SendfileResponse"] = chosen

    async def ping(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def sendfile_used(_request: web.Request) -> web.Response:
        return web.Response(text="yes" if fileserve._pool is not None else "no")

    async def main() -> None:
        app = web.Application()
        app[region_web.STREAM_ROOT] = root
        app[region_web.KEYRING_PATH] = root / "region-keyring.gpg"
        region_web.add_routes(app)
        app.router.add_get("/api/ping", ping)
        app.router.add_get("/bench/sendfile-used", sendfile_used)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=512)
        await site.start()
        loop = asyncio.get_running_loop()
        print(f"port {runner.addresses[0][1]} {type(loop).__module__}", flush=True)
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        await stopping.wait()
        await runner.cleanup()

    run(main(), default_loop=chosen_loop("asyncio"))


# ---------------------------------------------------------------- checks and clients


def probe(port: int, stream: Stream, design: Design) -> None:
    """Full-body sha256, Range, HEAD and ETag → 304 answer correctly, or BenchError."""
    rel = stream.small[0]
    data = (stream.root / "current" / rel).read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def ask(method: str, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, bytes]:
        conn.request(method, PREFIX + rel, headers=headers)
        resp = conn.getresponse()
        return resp, resp.read()

    def check(ok: bool, what: str) -> None:
        if not ok:
            raise BenchError(f"{design.key}: {what}")

    resp, body = ask("GET", {})
    check(
        resp.status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest(),
        f"full GET {resp.status}, {len(body)} bytes, sha256 mismatch or short",
    )
    etag = resp.getheader("ETag") or ""
    resp, body = ask("GET", {"Range": "bytes=1000-1999"})
    check(
        resp.status == 206
        and body == data[1000:2000]
        and resp.getheader("Content-Range") == f"bytes 1000-1999/{len(data)}",
        f"Range GET {resp.status} {resp.getheader('Content-Range')}",
    )
    resp, body = ask("HEAD", {})
    check(
        resp.status == 200 and body == b"" and resp.getheader("Content-Length") == str(len(data)),
        f"HEAD {resp.status} length {resp.getheader('Content-Length')}",
    )
    resp, body = ask("GET", {"If-None-Match": etag})
    check(bool(etag) and resp.status == 304 and body == b"", f"If-None-Match {resp.status}")
    if design.loop:  # the full GET above went through the design's file sender
        conn.request("GET", "/bench/sendfile-used")
        used = conn.getresponse().read() == b"yes"
        check(used == design.sendfile_response, f"SendfileResponse used: {used}")
    conn.close()


def cpu_busy(window_s: float) -> float:
    """Fraction of all CPUs busy (not idle or iowait) over the next ``window_s``."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = sample()
    time.sleep(window_s)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of all its threads and reaped children)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a process that just exited
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        table[int(stat.parent.name)] = (int(fields[1]), ticks / CLK_TCK)
    return table


def family(table: dict[int, tuple[int, float]], root: int) -> set[int]:
    """``root`` and all its descendants in ``table``."""
    found, grew = {root}, True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


T = TypeVar("T")


@dataclass
class Sampler:
    """Takes each sample on a quiet machine, and again if another process ran meanwhile.

    Before a sample it waits (up to QUIET_WAIT_S) for the CPUs to be idle; after
    it, CPU time used by processes other than this script's family and kernel
    threads (loopback work runs there) counts as foreign. A sample with more
    than QUIET_BUSY of the CPUs foreign is taken again, while the budget lasts.
    """

    budget_s: float = QUIET_BUDGET_S
    samples: int = 0
    retried: int = 0
    spoiled: int = 0

    def wait_quiet(self) -> None:
        start = time.monotonic()
        deadline = start + min(QUIET_WAIT_S, self.budget_s)
        while cpu_busy(0.3) > QUIET_BUSY and time.monotonic() < deadline:
            pass
        self.budget_s = max(0.0, self.budget_s - (time.monotonic() - start))

    def run(self, server_pid: int, take: Callable[[], T]) -> tuple[T, float, float]:
        """``take()``'s result, with the server's and the clients' CPU seconds during it."""
        self.samples += 1
        while True:
            self.wait_quiet()
            before, clients0 = process_table(), children_cpu_s()
            start = time.monotonic()
            result = take()
            elapsed = time.monotonic() - start
            after, clients_s = process_table(), children_cpu_s() - clients0
            server = family(after, server_pid)
            ours = family(after, os.getpid())
            server_s = sum(after[p][1] - before.get(p, (0, 0.0))[1] for p in server)
            foreign_s = sum(
                cpu - before.get(pid, (0, 0.0))[1]
                for pid, (ppid, cpu) in after.items()
                if pid not in ours and 2 not in (pid, ppid)
            )
            if foreign_s <= QUIET_BUSY * (os.cpu_count() or 1) * elapsed:
                return result, server_s, clients_s
            if self.budget_s <= 0:
                self.spoiled += 1
                return result, server_s, clients_s
            self.retried += 1
            self.budget_s = max(0.0, self.budget_s - elapsed)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def curl_fetch(port: int, stream: Stream, paths: list[list[str]]) -> float:
    """One curl per list, all at once, each over one connection; MiB/s over the wall time."""
    sizes = {rel: (stream.root / "current" / rel).stat().st_size for rel in stream.small}
    sizes[stream.large] = LARGE_SIZE
    procs = []
    start = time.monotonic()
    for client in paths:
        argv = [
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            str(CURL_TIMEOUT_S),
            "-w",
            "%{http_code} %{size_download}\\n",
        ]
        for rel in client:
            argv += ["-o", "/dev/null", f"http://127.0.0.1:{port}{PREFIX}{rel}"]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [p.communicate() for p in procs]
    seconds = time.monotonic() - start
    for client, proc, (out, err) in zip(paths, procs, outputs, strict=True):
        got = out.decode().split()
        want = [x for rel in client for x in ("200", str(sizes[rel]))]
        if proc.returncode != 0 or got != want:
            raise BenchError(f"curl exited {proc.returncode}: {err.decode().strip()} {got[:4]}")
    total = sum(sizes[rel] for client in paths for rel in client)
    return total / MIB / seconds


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (only this file's; it is never dirty)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cold_fetch(port: int, stream: Stream) -> tuple[float, list[float]]:
    """Fetch the 1 GiB file from disk, timing API pings one after another meanwhile.

    Returns (MiB/s, ping latencies in ms). A server that reads the disk on its
    event loop stalls every other request while it waits for the disk.
    """
    evict(stream.root / "current" / stream.large)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/ping")  # connect before the download starts
    conn.getresponse().read()
    argv = [
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        str(CURL_TIMEOUT_S),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        f"http://127.0.0.1:{port}{PREFIX}{stream.large}",
    ]
    pings: list[float] = []
    start = time.monotonic()
    curl = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while curl.poll() is None:
        sent = time.perf_counter()
        conn.request("GET", "/api/ping")
        conn.getresponse().read()
        pings.append((time.perf_counter() - sent) * 1000)
    seconds = time.monotonic() - start
    conn.close()
    out, err = curl.communicate()
    if curl.returncode != 0 or out.decode().split() != ["200", str(LARGE_SIZE)] or not pings:
        raise BenchError(f"cold curl exited {curl.returncode}: {err.decode().strip()} {out!r}")
    return LARGE_SIZE / MIB / seconds, pings


def wrk_rate(wrk: Path, url: str) -> float:
    """Requests per second from ``wrk -t1 -c16`` for WRK_SECONDS."""
    out = subprocess.run(
        [str(wrk), "-t1", "-c16", f"-d{WRK_SECONDS}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors", out)
    match = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if match is None or errors:
        raise BenchError(f"wrk on {url}: {out.strip()[-300:]}")
    return float(match[1])


def measure(
    server: tuple[int, int], stream: Stream, row: Row, wrk: Path | None, sampler: Sampler
) -> None:
    """One run of every case against one server; appends to ``row``."""
    port, pid = server
    rotated = [stream.small[n:] + stream.small[:n] for n in range(CLIENTS)]
    single = [[stream.large] * SINGLE_FETCHES]
    for case, paths in (("parallel", rotated), ("single", single)):
        rate, server_s, clients_s = sampler.run(pid, partial(curl_fetch, port, stream, paths))
        gib = sum(
            LARGE_SIZE if rel == stream.large else SMALL_SIZE for client in paths for rel in client
        ) / (1 << 30)
        row.samples.setdefault(case, []).append(rate)
        row.cpu.setdefault(case, []).append((server_s / gib, clients_s / gib))
    (rate, pings_ms), _, _ = sampler.run(pid, partial(cold_fetch, port, stream))
    row.samples.setdefault("cold", []).append(rate)
    row.samples.setdefault("cold_pings", []).append(len(pings_ms) * rate / (LARGE_SIZE / MIB))
    pings_ms.sort()
    row.samples.setdefault("cold_p99", []).append(pings_ms[int(0.99 * (len(pings_ms) - 1))])
    row.samples.setdefault("cold_max", []).append(pings_ms[-1])
    if wrk is not None:
        base = f"http://127.0.0.1:{port}"
        for case, url in (("api", f"{base}/api/ping"), ("small", f"{base}{PREFIX}{stream.index}")):
            reqs, _, _ = sampler.run(pid, partial(wrk_rate, wrk, url))
            row.samples.setdefault(case, []).append(reqs)


# ---------------------------------------------------------------- report


def ratio(row: Row, ref: Row, case: str) -> float | None:
    """Median over rounds of this round's value / nginx's value in the same round.

    Rounds interleave the servers, so a per-round ratio cancels most of the drift
    a shared 2-core machine shows from one minute to the next.
    """
    mine, theirs = row.samples.get(case), ref.samples.get(case)
    if not mine or not theirs:
        return None
    return statistics.median(m / t for m, t in zip(mine, theirs, strict=True))


def table(rows: list[Row], wanted: tuple[str, ...]) -> str:
    ref = rows[0]
    cases = [c for c in wanted if ref.median(c) is not None]
    head = "| design | " + " | ".join(CASE_TITLES[c] for c in cases) + " |"
    lines = [head, "|---" * (len(cases) + 1) + "|"]
    for row in rows:
        cells = []
        for case in cases:
            values = row.samples[case]
            med = statistics.median(values)
            digits = 1 if case in LATENCY_CASES else 0
            cell = f"{med:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"
            if row is not ref and case not in LATENCY_CASES:
                cell += f" **{ratio(row, ref, case):.2f}×**"
            cells.append(cell)
        lines.append(f"| {row.design.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(rows: list[Row]) -> str:
    head = (
        "| design | "
        + " | ".join(
            f"{CASE_TITLES[c].split(' (')[0]}: server + clients = total" for c in CPU_CASES
        )
        + " |"
    )
    lines = [head, "|---" * (len(CPU_CASES) + 1) + "|"]
    for row in rows:
        cells = []
        for case in CPU_CASES:
            server = statistics.median(s for s, _ in row.cpu[case])
            clients = statistics.median(c for _, c in row.cpu[case])
            total = statistics.median(s + c for s, c in row.cpu[case])
            cells.append(f"{server:.2f} + {clients:.2f} = {total:.2f}")
        lines.append(f"| {row.design.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(rows: list[Row]) -> list[str]:
    ref = rows[0]
    lines = []
    for row in rows[1:]:
        par, one = ratio(row, ref, "parallel") or 0.0, ratio(row, ref, "single") or 0.0
        mark_par = "PASS" if par >= TARGET_PARALLEL else "MISS"
        mark_one = "PASS" if one >= TARGET_SINGLE else "MISS"
        lines.append(
            f"{row.design.label}: parallel {par:.2f}× nginx (target ≥ "
            f"{TARGET_PARALLEL}) {mark_par}; single {one:.2f}× (target ≥ "
            f"{TARGET_SINGLE}) {mark_one}"
        )
    return lines


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    from importlib.metadata import version  # noqa: PLC0415 - only for the report

    return (
        f"nproc {os.cpu_count()}, CPU {cpu}, kernel {platform.release()}, Python "
        f"{platform.python_version()}, aiohttp {version('aiohttp')}, uvloop "
        f"{version('uvloop')}"
    )


def write_results(text: str) -> None:
    """Replace this script's section of RESULTS.md (or append it); other sections stay."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    chunks = re.split(r"(?m)^(?=## )", old)
    kept = [c for c in chunks if not c.startswith(SECTION)]
    RESULTS.write_text("".join(kept).rstrip("\n") + "\n\n" + text)


def noise_note(sampler: Sampler) -> str:
    return (
        f"The machine is shared: {sampler.retried} samples were taken again because other "
        f"processes used more than {QUIET_BUSY:.0%} of the CPUs during them; "
        f"{sampler.spoiled} of {sampler.samples} kept such load (retry budget spent)."
    )


def section(rows: list[Row], repeat: int, about: str, ngx: str, sampler: Sampler) -> str:
    date = subprocess.run(["date", "-u"], capture_output=True, text=True, check=True).stdout
    return (
        "\n".join(
            [
                SECTION,
                "",
                f"Run {date.strip()} with `.venv/bin/python bench/serve_bench.py --repeat {repeat}`.",
                f"Machine: {about}; {ngx}.",
                "",
                f"Files: {SMALL_COUNT} × 25 MiB and 1 × 1 GiB of random bytes in a snapshot dir behind "
                "`current`, page cache warm. Servers on 127.0.0.1, all started up front and measured "
                "one at a time: nginx (`sendfile "
                "on; tcp_nopush off; worker_processes 2; access_log off`) and the region's stream "
                "routes (`region.web.add_routes`) in one separate process per design. Clients: "
                f"{CLIENTS} curl processes at once, each fetching all {SMALL_COUNT} files over one "
                "keep-alive connection (3.2 GiB per run); one curl fetching the 1 GiB file "
                f"{SINGLE_FETCHES} times in a row over one connection; all "
                f"`-o /dev/null`, every status and size checked. Small requests: `wrk -t1 -c16 "
                f"-d{WRK_SECONDS}s` on an in-memory JSON handler (`/api/ping`; nginx answers it with "
                "`return 200`) and on a 2 KiB stream file. Each server passed a probe first "
                "(sha256 of a full GET, Range → 206, HEAD, If-None-Match → 304). Median of "
                f"{repeat} interleaved runs (min–max); **bold** is the median over runs of the ratio "
                "to nginx in the same run.",
                "",
                table(rows, FILE_CASES),
                "",
                "Where the event loop shows: small requests, and an API ping repeated one after "
                "another (Python http.client, one connection) while one curl fetches the 1 GiB file "
                "after `posix_fadvise(DONTNEED)` dropped it from the page cache:",
                "",
                table(rows, LOOP_CASES),
                "",
                "CPU seconds per GiB served (median over runs): the server process with its threads "
                "(nginx: master and workers) + all curl clients. Loopback receive work is charged to "
                "whichever side the kernel ran it on, so the split moves between runs; the total is "
                "the steady figure.",
                "",
                cpu_table(rows),
                "",
                noise_note(sampler),
                "",
                *(f"- {line}" for line in verdicts(rows)),
                "",
                reading(rows),
                "",
            ]
        )
        + "\n"
    )


def reading(rows: list[Row]) -> str:
    """The recommendation, with this run's numbers; empty unless every design ran."""
    by = {row.design.key: row for row in rows}
    if not {d.key for d in DESIGNS} <= set(by):
        return ""
    ngx, a_fr, u_fr, u_sf, a_sf = (
        by[k] for k in ("nginx", "asyncio", "uvloop", "uvloop+sf", "asyncio+sf")
    )

    def r(row: Row, case: str) -> str:
        return f"{ratio(row, ngx, case) or 0:.2f}×"

    def cpu(row: Row) -> str:
        return f"{statistics.median(s + c for s, c in row.cpu['parallel']):.2f}"

    def rate(row: Row) -> str:
        return f"{row.median('cold_pings') or 0:,.0f}"

    def ms(row: Row, case: str) -> str:
        return f"{row.median(case) or 0:.1f} ms"

    api_u = [
        statistics.fmean(pair)
        for pair in zip(u_fr.samples.get("api", []), u_sf.samples.get("api", []), strict=True)
    ]
    api_a = [
        statistics.fmean(pair)
        for pair in zip(a_fr.samples.get("api", []), a_sf.samples.get("api", []), strict=True)
    ]
    api = (
        f"{statistics.median(u / a for u, a in zip(api_u, api_a, strict=True)):.2f}×"
        if api_u
        else "(not measured: no wrk)"
    )
    return "\n".join(
        [
            "**Recommendation: bootsync-regiond and bootsync-rackd run on uvloop and serve files "
            "with `common.storage.fileserve.SendfileResponse`** (a FileResponse whose body "
            "goes out with `os.sendfile` from a small worker pool; every header decision stays FileResponse's). "
            "From this run:",
            "",
            f"- uvloop + plain FileResponse is the design to avoid: {r(u_fr, 'parallel')} nginx "
            f"with {CLIENTS} clients and {r(u_fr, 'single')} for one stream, and "
            f"{cpu(u_fr)} CPU-s per GiB (server + clients) against {cpu(u_sf)} for "
            f"SendfileResponse on the same loop ({r(u_sf, 'parallel')} / {r(u_sf, 'single')}).",
            f"- asyncio + FileResponse keeps sendfile on warm files ({r(a_fr, 'parallel')} / "
            f"{r(a_fr, 'single')}), but `loop.sendfile` reads the disk on the event-loop thread: "
            f"while a 1 GiB file is served from disk the API's p99 is {ms(a_fr, 'cold_p99')} "
            f"(worst {ms(a_fr, 'cold_max')}), against {ms(u_sf, 'cold_p99')} (worst "
            f"{ms(u_sf, 'cold_max')}) with SendfileResponse, which reads in worker threads. "
            f"The stalled loop answers {rate(a_fr)} pings/s against {rate(u_sf)}, and the CPU "
            f"it leaves idle is why its cold transfer runs at {r(a_fr, 'cold')} nginx against "
            f"{r(u_sf, 'cold')}. Racks serve images to booting machines from disks that are "
            "often slower than this VM's, where the stall grows with the disk's latency.",
            f"- Where uvloop helps: the API JSON handler answers {api} as many requests per "
            "second on uvloop as on asyncio (median per run, same handler, both file senders). "
            "With SendfileResponse the loop choice no longer costs file throughput, so that gain "
            "is kept for free.",
            f"- asyncio + SendfileResponse ({r(a_sf, 'parallel')} / {r(a_sf, 'single')}) is the "
            "fallback where uvloop is missing (`BOOTSYNC_EVENT_LOOP=asyncio`): same files, same "
            "headers, no stall.",
            "- On this 2-core box the clients and the server share the CPUs, so every sendfile "
            "design is CPU-bound near nginx and differences under ~10% between them are noise; "
            "the CPU-s/GiB table is the steadier comparison.",
        ]
    )


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "serve")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--designs",
        default=",".join(d.key for d in DESIGNS[1:]),
        help="comma-separated designs besides nginx, from: "
        + ", ".join(d.key for d in DESIGNS[1:] + POOL_DESIGNS),
    )
    parser.add_argument("--no-wrk", action="store_true", help="skip the small-request rows")
    parser.add_argument(
        "--no-results", action="store_true", help="print only; leave bench/RESULTS.md alone"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sendfile-response", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sendfile-threads", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.serve is not None:
        serve_child(
            args.serve, sendfile_response=args.sendfile_response, threads=args.sendfile_threads
        )
        return 0
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: servers stopped
    if shutil.which("curl") is None:
        raise BenchError("curl not found")
    nginx = ensure_program("nginx", "nginx")
    if nginx is None:
        raise BenchError("nginx could not be installed")
    wrk = None if args.no_wrk else ensure_program("wrk", "wrk")
    if wrk is None and not args.no_wrk:
        print("wrk unavailable: small-request rows skipped", flush=True)
    work: Path = args.work.resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    stream = make_stream(work)
    chosen = set(args.designs.split(","))
    unknown = chosen - {d.key for d in DESIGNS + POOL_DESIGNS}
    if unknown:
        raise BenchError(f"unknown designs: {', '.join(sorted(unknown))}")
    rows = [Row(d) for d in DESIGNS + POOL_DESIGNS if d.key == "nginx" or d.key in chosen]
    with ExitStack() as servers:
        running = {}
        for row in rows:
            if row.design.key == "nginx":
                server = servers.enter_context(nginx_serving(nginx, stream, work / "nginx"))
            else:
                server = servers.enter_context(region_serving(row.design, stream, work / "logs"))
            probe(server[0], stream, row.design)
            running[row.design.key] = server
        sampler = Sampler()
        for n in range(args.repeat):
            order = rows[n % len(rows) :] + rows[: n % len(rows)]
            for row in order:
                measure(running[row.design.key], stream, row, wrk, sampler)
            print(
                f"round {n + 1}/{args.repeat} done at {time.monotonic() - started:.0f} s",
                flush=True,
            )
    print()
    print(table(rows, FILE_CASES))
    print()
    print(table(rows, LOOP_CASES))
    print()
    print(cpu_table(rows))
    print()
    print(reading(rows))
    print()
    print(noise_note(sampler))
    for line in verdicts(rows):
        print(line)
    if sampler.spoiled > sampler.samples // 10:
        print(
            f"\nnot writing {RESULTS.name}: {sampler.spoiled} of {sampler.samples} samples ran "
            "beside other load; rerun when the machine is quieter"
        )
    elif not args.no_results:
        ngx = subprocess.run([str(nginx), "-v"], capture_output=True, text=True, check=False)
        write_results(section(rows, args.repeat, machine(), ngx.stderr.strip(), sampler))
        print(f"\nwrote section {SECTION!r} of {RESULTS}")
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        print(f"serve_bench: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("serve_bench: interrupted", file=sys.stderr)
        sys.exit(130)
