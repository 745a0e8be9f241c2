"""Benchmark: rack pulls from a real region, against curl, sstream-mirror and nginx.

One ``bootsync-regiond`` (data dir /tmp/bbk*/region) imports the one-version
sample stream (≥ 1 GiB; see region_bench.py) from nginx on 127.0.0.1. Then:

1. Many racks at once (``--racks``, default 20, real ``bootsync-rackd``
   processes): they start and register while the region holds nothing, then the
   import is run and its ``snapshot`` event sends every rack pulling at the same
   moment. Aggregate throughput = all bytes / (first ``pull_started`` → last
   ``pull_finished``). Reference: as many curl clients at once (one ``curl
   --parallel --parallel-max 8`` each, the rack's concurrency) fetching the same
   files from nginx serving the region's published snapshot directory; and the
   same curl clients against the region, which isolates the server. All write
   to disk. Target ≥ 0.9× nginx.
2. One rack's first pull (fresh data dir; ``pull_started`` → ``pull_finished``,
   the ``duration_s`` of its summary) against ``xargs -P 8 curl`` of the same
   files from the region's /MAAS/images-stream/ (no hashing, no fsync) and
   ``sstream-mirror --keyring region-keyring.gpg`` of the region's stream.
   ``--repeat`` interleaved rounds, medians, disturbed runs redone (bounded).
   Targets: ≥ 0.65× curl's throughput, ≥ 2.0× faster than sstream-mirror, peak
   RSS (ru_maxrss from wait4 after SIGTERM, so start-up, registration, pull and
   idle time) ≤ 80 MiB.
3. A no-op poll: one of the racks from 1 (synced) is restarted through a small
   recording TCP proxy of this script, with a 1-minute sync interval. Its start
   poll and its first timer poll find nothing new; the HTTP bytes (request and
   response, headers and body, both directions; TCP/IP headers not counted) of
   the exchanges it opened between ``pull_started`` and ``pull_finished`` are
   counted. An operator-forced poll (``import-boot-images``) is shown for scale.
   Target ≤ 2 KiB.

Results go to the "Rack pull" section of bench/RESULTS.md, with the phase timings
of the pulls from their JSON logs; when the curl target is missed (or with
``--profile``) one more pull runs under cProfile (on asyncio's loop) and its top
functions are recorded.

Run: ``.venv/bin/python bench/rack_bench.py [--racks 20] [--repeat 3] [--profile]
[--no-results]`` (or ``make bench-rack``). Needs nginx (apt-get if missing), curl,
xargs and sstream-mirror (``make setup``). Work files go to bench/work/rack/, data
to /tmp/bbk* (about (racks + 2) × 1.2 GiB at the peak); every process started is
stopped at the end, also on Ctrl-C. Takes about 3–4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from _common import (
    DISTURBED_CORES,
    GIB,
    MIB,
    REPO,
    BenchError,
    Pacer,
    Stream,
    Verdict,
    children_of,
    ensure_nginx,
    find_program,
    find_sstream_mirror,
    free_port,
    least_disturbed,
    load_average,
    machine,
    make_stream,
    measure,
    median,
    nginx_process,
    nginx_serving,
    parse_size,
    process_cpu_s,
    shipped_loops,
    user_cpu_s,
    utc_date,
    versions,
    wait_rusage,
    write_section,
)
from region_bench import (
    PROFILE_ENV,
    Daemon,
    Region,
    add_wildcard_source,
    bootsync_cli,
    profile_text,
    region_running,
    short_dir,
    stamp,
    timed_import,
    write_region_config,
)

SECTION = "## Rack pull"
CONCURRENCY = 8
TARGET_CURL = 0.65
TARGET_SSTREAM = 2.0
TARGET_RSS_MIB = 80.0
TARGET_POLL_BYTES = 2048
TARGET_NGINX = 0.9
REDO_DISTURBED = 2
PULL_TIMEOUT_S = 120.0
SWARM_TIMEOUT_S = 420.0


# ---------------------------------------------------------------- the region's stream


@dataclass(frozen=True)
class Blob:
    """One file a rack downloads: a path of the region's stream and its content."""

    path: str
    size: int
    sha256: str


def region_items(root: Path) -> list[Blob]:
    """Every item of the region's published stream (``root``: its snapshot directory)."""
    index = json.loads((root / "streams/v1/index.json").read_bytes())
    items = []
    for entry in index["index"].values():
        doc = json.loads((root / entry["path"]).read_bytes())
        for product in doc["products"].values():
            for version in product["versions"].values():
                items += [
                    Blob(it["path"], int(it["size"]), it["sha256"])
                    for it in version["items"].values()
                    if "path" in it
                ]
    return items


def unique_blobs(items: Sequence[Blob]) -> list[Blob]:
    """One path per sha256: what a rack downloads (it stores content once)."""
    seen: dict[str, Blob] = {}
    for blob in items:
        seen.setdefault(blob.sha256, blob)
    return list(seen.values())


# ---------------------------------------------------------------- CPU sampling


@dataclass(frozen=True)
class Usage:
    """CPU seconds used between two moments."""

    machine_user: float
    pids: float  # user + system (children included) of the processes asked about
    pids_user: float


class CpuSampler:
    """Samples the machine's CPU and that of watched processes every 0.1 s, in a thread."""

    def __init__(self) -> None:
        self.watch: set[int] = set()
        self._samples: list[tuple[float, float, dict[int, tuple[float, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            per_pid = {
                pid: (process_cpu_s([pid]), process_cpu_s([pid], user_only=True))
                for pid in list(self.watch)
            }
            self._samples.append((time.time(), user_cpu_s(), per_pid))

    def _at(self, when: float) -> tuple[float, dict[int, tuple[float, float]]]:
        best = self._samples[0]
        for sample in self._samples:
            if sample[0] > when:
                break
            best = sample
        return best[1], best[2]

    def usage(self, t0: float, t1: float, pids: Sequence[int]) -> Usage:
        """What the machine and ``pids`` used between the wall times ``t0`` and ``t1``."""
        time.sleep(0.25)  # let a sample after t1 land
        user0, cpu0 = self._at(t0)
        user1, cpu1 = self._at(t1)
        deltas = [
            (cpu1[p][0] - cpu0[p][0], cpu1[p][1] - cpu0[p][1])
            for p in pids
            if p in cpu0 and p in cpu1
        ]
        return Usage(user1 - user0, sum(d[0] for d in deltas), sum(d[1] for d in deltas))


# ---------------------------------------------------------------- racks


def rack_daemon(
    data_root: Path,
    name: str,
    *,
    region_url: str,
    secret_file: Path,
    logs: Path,
    interval_minutes: int = 5,
) -> Daemon:
    """A ``bootsync-rackd`` (not started) with data in ``data_root/name``."""
    config = logs.parent / f"rackd-{name}.toml"
    config.write_text(
        f'[server]\nhostname = "bench-{name}"\n[sync]\ninterval_minutes = '
        f"{interval_minutes}\nconcurrency = {CONCURRENCY}\n"
        '[log]\nformat = "json"\n'
    )
    port = free_port()
    return Daemon(
        "rack",
        [
            "--config",
            str(config),
            "--region",
            region_url,
            "--secret-file",
            str(secret_file),
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data_root / name),
        ],
        logs / f"{name}.log",
        port,
    )


def fetching_pull(
    rack: Daemon,
    *,
    timeout_s: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait for the rack's first ok pull that fetched files: (pull_started, pull_finished)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = [
            e
            for e in rack.events("pull_finished")
            if e.get("outcome") == "ok" and e.get("files_fetched")
        ]
        failed = [
            e
            for e in rack.events("pull_finished")
            if e.get("outcome") == "failed" and "404" not in str(e.get("error"))
        ]
        if done:
            finished = done[0]
            started = [
                e
                for e in rack.events("pull_started")
                if e.get("pull_id") == finished.get("pull_id")
            ]
            return started[0], finished
        if failed:
            raise BenchError(f"{rack.log_path.name}: pull failed: {failed[-1]}")
        if time.monotonic() > deadline or (rack.proc and rack.proc.poll() is not None):
            raise BenchError(f"no fetching pull in {rack.log_path}:\n{rack.log_tail()}")
        time.sleep(0.1)


def pull_phases(
    rack: Daemon, started: Mapping[str, Any], finished: Mapping[str, Any]
) -> dict[str, float]:
    """Split a pull by its events: metadata (index, verify, plan), download, publish."""
    pull_id = started.get("pull_id")
    events = [e for e in rack.events() if e.get("pull_id") == pull_id]
    planned = [stamp(e) for e in events if e["event"] == "pull_planned"]
    downloads = [stamp(e) for e in events if e["event"] == "download_finished"]
    t0, t1 = stamp(started), stamp(finished)
    if not planned or not downloads:
        return {"metadata": 0.0, "download": t1 - t0, "publish": 0.0}
    return {
        "metadata": planned[0] - t0,
        "download": max(downloads) - planned[0],
        "publish": t1 - max(downloads),
    }


# ---------------------------------------------------------------- part 1: many clients


@dataclass
class Swarm:
    """Many clients pulling at once."""

    name: str
    clients: int
    bytes: int
    window_s: float
    client_s: list[float]
    server_cpu_s: float
    client_cpu_s: float
    rss_kib: list[int] = field(default_factory=list)

    @property
    def mib_s(self) -> float:
        return self.bytes / MIB / self.window_s


def rack_swarm(region: Region, args: argparse.Namespace, ctx: Context) -> Swarm:
    """Part 1: ``--racks`` racks register, then the import sends them all pulling at once."""
    racks = [
        rack_daemon(
            ctx.root,
            f"r{i:02d}",
            region_url=region.daemon.url,
            secret_file=ctx.secret_file,
            logs=ctx.logs,
        )
        for i in range(args.racks)
    ]
    try:
        for rack in racks:
            rack.launch()
        for rack in racks:
            rack.wait_ready("/livez", timeout_s=180)
            rack.wait_event("rack_registered", timeout_s=60)
        ctx.sampler.watch |= {r.pid for r in racks}
        print(f"  {len(racks)} racks registered; importing", flush=True)
        add_wildcard_source(region, ctx.upstream, ctx.stream.keyring)
        imported = timed_import(region)
        print(f"  region import {imported.seconds:.2f} s; racks pulling", flush=True)
        pulls = [fetching_pull(r, timeout_s=SWARM_TIMEOUT_S) for r in racks]
        t0 = min(stamp(s) for s, _f in pulls)
        t1 = max(stamp(f) for _s, f in pulls)
        server = ctx.sampler.usage(t0, t1, [region.daemon.pid]).pids
        clients = ctx.sampler.usage(t0, t1, [r.pid for r in racks]).pids
        ctx.rack_phases = [pull_phases(r, s, f) for r, (s, f) in zip(racks, pulls, strict=True)]
    finally:
        for rack in racks:
            rack.terminate()
        rss = [rack.stop() for rack in racks]
        ctx.sampler.watch -= {r.pid for r in racks if r.proc is not None}
    return Swarm(
        f"{len(racks)} × bootsync-rackd ← region",
        len(racks),
        sum(int(f["bytes"]) for _s, f in pulls),
        t1 - t0,
        [float(f["duration_s"]) for _s, f in pulls],
        server,
        clients,
        rss,
    )


def curl_swarm(
    name: str,
    base_url: str,
    blobs: Sequence[Blob],
    *,
    clients: int,
    ctx: Context,
    server_pids: Callable[[], list[int]],
) -> Swarm:
    """``clients`` curl processes at once, each fetching every blob (8 in parallel) to disk."""
    out = ctx.root / "curl-swarm"
    shutil.rmtree(out, ignore_errors=True)
    lists = []
    for i in range(clients):
        listing = ctx.work / f"swarm-{i:02d}.curl"
        listing.write_text(
            "".join(
                f'url = "{base_url}{b.path}"\noutput = "{out}/c{i:02d}/{b.path}"\n' for b in blobs
            )
        )
        lists.append(listing)
    ctx.sampler.watch |= set(server_pids())
    os.sync()
    ctx.pacer.settle()
    t0 = time.time()
    procs = [
        subprocess.Popen(
            [
                "curl",
                "-sSf",
                "--parallel",
                "--parallel-max",
                str(CONCURRENCY),
                "--create-dirs",
                "-K",
                str(listing),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for listing in lists
    ]
    ended, cpu, rss = [], 0.0, []
    try:
        for proc in procs:
            status, usage = wait_rusage(proc, SWARM_TIMEOUT_S)
            ended.append(time.time())
            if os.waitstatus_to_exitcode(status) != 0:
                raise BenchError(f"curl client exited {proc.returncode}")
            cpu += usage.ru_utime + usage.ru_stime
            rss.append(usage.ru_maxrss)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
    t1 = max(ended)
    server = ctx.sampler.usage(t0, t1, server_pids()).pids
    for i in range(clients):
        for blob in blobs:
            if (out / f"c{i:02d}" / blob.path).stat().st_size != blob.size:
                raise BenchError(f"curl client {i}: {blob.path} is short")
    shutil.rmtree(out)
    return Swarm(
        name,
        clients,
        clients * sum(b.size for b in blobs),
        t1 - t0,
        [e - t0 for e in ended],
        server,
        cpu,
        rss,
    )


# ---------------------------------------------------------------- part 2: one rack


@dataclass(frozen=True)
class Sample:
    """One run of one tool against the region."""

    seconds: float  # rack: the pull's duration_s; others: the whole process
    wall_s: float  # rack: process start → pull_finished; others: = seconds
    cpu_s: float  # the client (rack: its whole life, gpg included)
    server_cpu_s: float  # the region over the run
    other_cpu_s: float  # user CPU of the rest of the machine over the run
    rss_kib: int
    rss_floor_kib: int
    phases: Mapping[str, float] = field(default_factory=dict)
    cpu_sys_s: float = 0.0  # the system part of cpu_s

    @property
    def busy_cores(self) -> float:
        return self.other_cpu_s / self.seconds


@dataclass
class Row:
    """The samples of one tool."""

    name: str
    bytes: int
    samples: list[Sample] = field(default_factory=list)
    redone: int = 0

    @property
    def seconds(self) -> float:
        return median(s.seconds for s in self.samples)

    @property
    def mib_s(self) -> float:
        return self.bytes / MIB / self.seconds

    @property
    def rss_mib(self) -> float:
        return max(s.rss_kib for s in self.samples) / 1024


@dataclass
class Context:
    """What the parts share."""

    work: Path
    logs: Path
    root: Path  # /tmp/bbk*: rack data, curl output
    stream: Stream
    upstream: str
    secret_file: Path
    sampler: CpuSampler
    pacer: Pacer
    rack_phases: list[dict[str, float]] = field(default_factory=list)


@dataclass
class SingleBench:
    """Part 2: one client at a time against the region."""

    ctx: Context
    region: Region
    blobs: list[Blob]
    items: list[Blob]
    sstream: Path
    keyring: Path
    kept_rack: Path | None = None

    def rack_once(self, prefix: str, attempt: int) -> Sample:
        name = f"{prefix}-{attempt}"
        if self.kept_rack is not None:
            shutil.rmtree(self.kept_rack, ignore_errors=True)
        os.sync()
        self.ctx.pacer.settle()
        rack = rack_daemon(
            self.ctx.root,
            name,
            region_url=self.region.daemon.url,
            secret_file=self.ctx.secret_file,
            logs=self.ctx.logs,
        )
        floor = _own_maxrss()
        try:
            rack.launch()
            self.ctx.sampler.watch.add(rack.pid)
            started, finished = fetching_pull(rack, timeout_s=PULL_TIMEOUT_S)
            t0, t1 = stamp(started), stamp(finished)
            region_use = self.ctx.sampler.usage(t0, t1, [self.region.daemon.pid])
            rack_use = self.ctx.sampler.usage(t0, t1, [rack.pid])
        finally:
            rss = rack.stop()
            self.ctx.sampler.watch.discard(rack.pid)
        self.kept_rack = self.ctx.root / name
        assert rack.usage is not None
        cpu = rack.usage.ru_utime + rack.usage.ru_stime
        phases = pull_phases(rack, started, finished)
        seconds = float(finished["duration_s"])
        if int(finished["bytes"]) != sum(b.size for b in self.blobs):
            raise BenchError(
                f"rack pulled {finished['bytes']} bytes, expected {sum(b.size for b in self.blobs)}"
            )
        other = region_use.machine_user - region_use.pids_user - rack_use.pids_user
        sample = Sample(
            seconds,
            t1 - rack.started_at,
            cpu,
            region_use.pids,
            max(0.0, other),
            rss,
            floor,
            phases,
            cpu_sys_s=rack.usage.ru_stime,
        )
        _report("rack pull", name, sample)
        return sample

    def _client(
        self, label: str, argv: list[str], env: Mapping[str, str], out: Path, check: Sequence[Blob]
    ) -> Sample:
        shutil.rmtree(out, ignore_errors=True)
        os.sync()
        self.ctx.pacer.settle()
        t0 = time.time()
        got = measure(argv, env, self.ctx.logs / f"{label}.log")
        t1 = time.time()
        region_use = self.ctx.sampler.usage(t0, t1, [self.region.daemon.pid])
        for blob in check:
            if (out / blob.path).stat().st_size != blob.size:
                raise BenchError(f"{label}: {out / blob.path} is short")
        shutil.rmtree(out)
        return Sample(
            got.seconds,
            got.seconds,
            got.cpu_s,
            region_use.pids,
            max(0.0, got.other_user_s - region_use.pids_user),
            got.rss_kib,
            got.rss_floor_kib,
            cpu_sys_s=got.cpu_s - got.user_s,
        )

    def curl_once(self, prefix: str, attempt: int) -> Sample:
        label, out = f"{prefix}-{attempt}", self.ctx.root / "curl-out"
        url = self.region.stream_url()
        listing = self.ctx.work / "curl-list.txt"
        listing.write_text("".join(f"{out / b.path} {url}{b.path}\n" for b in self.blobs))
        sample = self._client(
            label,
            [
                "xargs",
                "-a",
                str(listing),
                "-P",
                str(CONCURRENCY),
                "-n",
                "2",
                "curl",
                "-sf",
                "--create-dirs",
                "-o",
            ],
            {},
            out,
            self.blobs,
        )
        _report("xargs curl", label, sample)
        return sample

    def sstream_once(self, prefix: str, attempt: int) -> Sample:
        label, out = f"{prefix}-{attempt}", self.ctx.root / "sstream-out"
        gnupg = self.ctx.work / "gnupg-empty"
        shutil.rmtree(gnupg, ignore_errors=True)
        gnupg.mkdir(mode=0o700)  # sstream-mirror's GNUPGHOME: trusts only --keyring
        sample = self._client(
            label,
            [str(self.sstream), "--keyring", str(self.keyring), self.region.stream_url(), str(out)],
            {"GNUPGHOME": str(gnupg)},
            out,
            self.items,
        )
        _report("sstream-mirror", label, sample)
        return sample

    def run(self, repeat: int) -> list[Row]:
        rows = [
            Row("bootsync-rackd (first pull)", sum(b.size for b in self.blobs)),
            Row(f"xargs -P {CONCURRENCY} curl", sum(b.size for b in self.blobs)),
            Row("sstream-mirror", sum(b.size for b in self.items)),
        ]
        runs = (self.rack_once, self.curl_once, self.sstream_once)
        for rep in range(repeat):
            for row, run in zip(rows, runs, strict=True):
                sample, redone = least_disturbed(
                    partial(run, f"{row.name.split()[0].lower()}-{rep}"),
                    lambda s: s.busy_cores,
                    pacer=self.ctx.pacer,
                    redo=REDO_DISTURBED,
                )
                row.samples.append(sample)
                row.redone += redone
        return rows


def profile_rack(single: SingleBench) -> str:
    """One rack's first pull under cProfile (its event-loop thread; hashing runs in workers)."""
    ctx = single.ctx
    stats = ctx.work / "rack.pstats"
    rack = rack_daemon(
        ctx.root,
        "profile",
        region_url=single.region.daemon.url,
        secret_file=ctx.secret_file,
        logs=ctx.logs,
    )
    rack.prefix = ("-m", "cProfile", "-o", str(stats))
    rack.env = PROFILE_ENV
    try:
        rack.launch()
        _started, finished = fetching_pull(rack, timeout_s=PULL_TIMEOUT_S)
    finally:
        rack.stop()
        shutil.rmtree(ctx.root / "profile", ignore_errors=True)
    return profile_text(
        stats,
        "cProfile (asyncio loop) of one rack's first pull (event-loop "
        "thread only; sha256 and writes run in worker threads): pull "
        f"{float(finished['duration_s']):.2f} s under the profiler",
        lines=18,
    )


def _own_maxrss() -> int:
    import resource  # noqa: PLC0415 - only here

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _report(what: str, label: str, s: Sample) -> None:
    print(
        f"  {what:<15} {label:<18} {s.seconds:6.2f} s  RSS {s.rss_kib / 1024:5.1f} MiB  "
        f"CPU {s.cpu_s:5.2f} s  region CPU {s.server_cpu_s:5.2f} s  other CPU "
        f"{s.other_cpu_s:5.2f} s{'  disturbed' if s.busy_cores > DISTURBED_CORES else ''}",
        flush=True,
    )


# ---------------------------------------------------------------- part 3: the no-op poll


@dataclass(frozen=True)
class Chunk:
    """Bytes one proxy connection carried in one direction at one moment."""

    at: float
    conn: int
    to_server: bool
    size: int
    head: str | None  # the request or status line when the chunk starts one


class RecordingProxy:
    """A TCP proxy on 127.0.0.1 that records every chunk it forwards to ``port``."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.chunks: list[Chunk] = []
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._count = 0
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._socks:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _addr = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._count += 1
                self._socks += [client, server]
                conn = self._count
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, conn, up), daemon=True, name=f"proxy-{conn}"
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, conn: int, up: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                head = None
                if data[:5] in (b"GET /", b"POST ", b"HEAD ", b"PUT /") or data.startswith(
                    b"HTTP/1."
                ):
                    head = data.split(b"\r\n", 1)[0].decode("latin-1")
                with self._lock:
                    self.chunks.append(Chunk(time.time(), conn, up, len(data), head))
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@dataclass
class Exchange:
    """One HTTP request and its response as seen by the proxy."""

    at: float
    request: str
    status: str = ""
    up: int = 0
    down: int = 0


def exchanges(chunks: Sequence[Chunk]) -> list[Exchange]:
    """Group chunks into exchanges: each request line starts one on its connection."""
    current: dict[int, Exchange] = {}
    found = []
    for chunk in chunks:
        if chunk.to_server and chunk.head is not None:
            current[chunk.conn] = Exchange(chunk.at, chunk.head)
            found.append(current[chunk.conn])
        ex = current.get(chunk.conn)
        if ex is None:
            continue
        if chunk.to_server:
            ex.up += chunk.size
        else:
            ex.down += chunk.size
            if chunk.head is not None and not ex.status:
                ex.status = chunk.head
    return found


@dataclass(frozen=True)
class Poll:
    """The wire cost of one poll."""

    reason: str
    outcome: str
    exchanges: list[Exchange]
    window_bytes: int  # everything on the wire in the window, keepalives included

    @property
    def bytes(self) -> int:
        return sum(e.up + e.down for e in self.exchanges)


def poll_cost(
    proxy: RecordingProxy, started: Mapping[str, Any], finished: Mapping[str, Any]
) -> Poll:
    t0, t1 = stamp(started), stamp(finished)
    time.sleep(0.5)  # a response may still be on its way through the proxy
    chunks = list(proxy.chunks)
    mine = [e for e in exchanges(chunks) if t0 - 0.005 <= e.at <= t1 + 0.005]
    window = sum(c.size for c in chunks if t0 - 0.005 <= c.at <= t1 + 0.05)
    return Poll(str(finished.get("reason")), str(finished.get("outcome")), mine, window)


@dataclass
class PollProbe:
    """A synced rack restarted through the proxy with a 1-minute interval."""

    rack: Daemon
    proxy: RecordingProxy
    region: Region

    def pull_where(
        self,
        wanted: Callable[[str], bool],
        timeout_s: float = 100.0,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The first pull whose reason passes ``wanted``: (pull_started, pull_finished)."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = [e for e in self.rack.events("pull_finished") if wanted(str(e["reason"]))]
            if done:
                started = [
                    e
                    for e in self.rack.events("pull_started")
                    if e.get("pull_id") == done[0].get("pull_id")
                ]
                return started[0], done[0]
            if time.monotonic() > deadline:
                raise BenchError(f"no such poll in {self.rack.log_path}:\n{self.rack.log_tail()}")
            time.sleep(0.2)

    def polls(self) -> list[Poll]:
        """The start poll, the first timer poll, then one forced by an operator."""
        found = [poll_cost(self.proxy, *self.pull_where(lambda r: "timer" not in r))]
        found.append(poll_cost(self.proxy, *self.pull_where(lambda r: "timer" in r)))
        system_id = json.loads((Path(self.rack.args[-1]) / "rack.json").read_text())["system_id"]
        self.region.api.call("POST", f"/rackcontrollers/{system_id}/?op=import_boot_images")
        found.append(poll_cost(self.proxy, *self.pull_where(lambda r: "import" in r, 30)))
        return found


@contextmanager
def poll_probe(region: Region, ctx: Context, rack_name: str) -> Iterator[PollProbe]:
    proxy = RecordingProxy(region.daemon.port)
    rack = rack_daemon(
        ctx.root,
        rack_name,
        region_url=f"http://127.0.0.1:{proxy.port}",
        secret_file=ctx.secret_file,
        logs=ctx.logs,
        interval_minutes=1,
    )
    rack.log_path = ctx.logs / f"{rack_name}-poll.log"
    try:
        rack.start("/livez")
        yield PollProbe(rack, proxy, region)
    finally:
        rack.stop()
        proxy.close()


# ---------------------------------------------------------------- reporting


def verdicts(
    rows: Sequence[Row],
    swarms: Sequence[Swarm],
    polls: Sequence[Poll],
) -> list[Verdict]:
    rack, curl, sstream = rows
    timer = next(p for p in polls if "timer" in p.reason)
    ratio_curl = rack.mib_s / curl.mib_s
    speedup = sstream.seconds / rack.seconds
    ratio_nginx = swarms[0].mib_s / swarms[1].mib_s
    return [
        Verdict(
            "one rack's first pull vs xargs curl (throughput)",
            f"{ratio_curl:.2f}×",
            f"≥ {TARGET_CURL:.2f}×",
            ratio_curl >= TARGET_CURL,
        ),
        Verdict(
            "one rack's first pull vs sstream-mirror (speed-up)",
            f"{speedup:.2f}×",
            f"≥ {TARGET_SSTREAM:.1f}×",
            speedup >= TARGET_SSTREAM,
        ),
        Verdict(
            "rack peak RSS",
            f"{rack.rss_mib:.1f} MiB",
            f"≤ {TARGET_RSS_MIB:.0f} MiB",
            rack.rss_mib <= TARGET_RSS_MIB,
        ),
        Verdict(
            "no-op poll on the wire (timer poll)",
            f"{timer.bytes} bytes",
            f"≤ {TARGET_POLL_BYTES} bytes",
            timer.bytes <= TARGET_POLL_BYTES,
        ),
        Verdict(
            f"{swarms[0].clients} racks at once vs nginx to {swarms[1].clients} curl "
            "clients (aggregate throughput)",
            f"{ratio_nginx:.2f}×",
            f"≥ {TARGET_NGINX:.1f}×",
            ratio_nginx >= TARGET_NGINX,
        ),
    ]


def single_table(rows: Sequence[Row]) -> str:
    lines = [
        "| client ← region | data | median s | best s | MiB/s | peak RSS MiB | CPU s "
        "(user + sys) | region CPU s | other CPU s | runs (s) | redone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        floor = max(row.samples, key=lambda s: s.rss_kib)
        bound = "≤ " if floor.rss_kib <= floor.rss_floor_kib else ""
        lines.append(
            f"| {row.name} | {row.bytes / MIB:.0f} MiB | {row.seconds:.2f} | "
            f"{min(s.seconds for s in row.samples):.2f} | {row.mib_s:.0f} | "
            f"{bound}{row.rss_mib:.1f} | {median(s.cpu_s for s in row.samples):.2f} ("
            f"{median(s.cpu_s - s.cpu_sys_s for s in row.samples):.2f} + "
            f"{median(s.cpu_sys_s for s in row.samples):.2f}) | "
            f"{median(s.server_cpu_s for s in row.samples):.2f} | "
            f"{median(s.other_cpu_s for s in row.samples):.2f} | "
            f"{', '.join(f'{s.seconds:.2f}' for s in row.samples)} | {row.redone} |"
        )
    return "\n".join(lines)


def phase_table(rows: Sequence[Row], swarm_phases: Sequence[Mapping[str, float]]) -> str:
    names = ("metadata", "download", "publish")
    lines = [
        "| pull | start-up → pull_started | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    rack = rows[0]
    startup = median(s.wall_s - s.seconds for s in rack.samples)
    cells = " | ".join(f"{median(s.phases.get(n, 0.0) for s in rack.samples):.2f}" for n in names)
    lines.append(f"| one rack (median) | {startup:.2f} | {cells} |")
    if swarm_phases:
        cells = " | ".join(
            f"{median(p[n] for p in swarm_phases):.2f} (max {max(p[n] for p in swarm_phases):.2f})"
            for n in names
        )
        lines.append(f"| {len(swarm_phases)} racks at once (median, max) | – | {cells} |")
    return "\n".join(lines)


def swarm_table(swarms: Sequence[Swarm]) -> str:
    lines = [
        "| clients ← server | data | window s | aggregate MiB/s | per client s "
        "(median / max) | server CPU s | server CPU s/GiB | clients CPU s "
        "| client peak RSS MiB (max) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for s in swarms:
        lines.append(
            f"| {s.name} | {s.bytes / GIB:.1f} GiB | {s.window_s:.1f} | {s.mib_s:.0f} | "
            f"{median(s.client_s):.1f} / {max(s.client_s):.1f} | {s.server_cpu_s:.1f} | "
            f"{s.server_cpu_s / (s.bytes / GIB):.2f} | {s.client_cpu_s:.1f} | "
            f"{max(s.rss_kib) / 1024:.1f} |"
        )
    return "\n".join(lines)


def poll_table(polls: Sequence[Poll]) -> str:
    lines = ["| poll | outcome | request → status | up B | down B |", "|---|---|---|---:|---:|"]
    for poll in polls:
        for ex in poll.exchanges:
            lines.append(
                f"| {poll.reason} | {poll.outcome} | `{ex.request}` → "
                f"`{ex.status}` | {ex.up} | {ex.down} |"
            )
        lines.append(
            f"| **{poll.reason} total** | | {len(poll.exchanges)} exchange(s); "
            f"all bytes in the window {poll.window_bytes} | | **{poll.bytes}** |"
        )
    return "\n".join(lines)


def section(
    args: argparse.Namespace,
    ctx: Context,
    *,
    rows: Sequence[Row],
    swarms: Sequence[Swarm],
    polls: Sequence[Poll],
    found: Sequence[Verdict],
    about: str,
    profile: str | None,
) -> str:
    parts = [
        SECTION,
        "",
        f"Run {utc_date()} with `.venv/bin/python bench/rack_bench.py --file-size "
        f"{args.file_size} --racks {args.racks} --repeat {args.repeat}`.",
        f"Machine: {about}.",
        "",
        f"A real bootsync-regiond imported the one-version sample stream "
        f"({ctx.stream.total / MIB:.0f} MiB) from nginx and serves it at "
        "/MAAS/images-stream/ (its shipped file sender and event loop). Racks are real "
        f"bootsync-rackd processes (concurrency {CONCURRENCY}, sha256 of every byte, fsync of "
        "every blob, hard-linked snapshot); everything on 127.0.0.1, all clients write to "
        "the same disk.",
        "",
        f"Many at once: {args.racks} racks registered with the region while it held nothing; "
        "the import's `snapshot` event started all pulls together. Window: first "
        "`pull_started` → last `pull_finished`. Reference: the same number of `curl "
        f"--parallel --parallel-max {CONCURRENCY}` processes started together, each fetching "
        "the same files (one path per sha256, as a rack does) to disk, from nginx "
        "(sendfile, 2 workers) serving the region's published snapshot directory, and from "
        "the region. Server CPU is sampled from /proc every 0.1 s.",
        "",
        swarm_table(swarms),
        "",
        f"One at a time, {args.repeat} interleaved rounds, median: a rack's first pull into a "
        "fresh data dir (timed `pull_started` → `pull_finished`, its `duration_s`; start-up "
        f"and registration come before), `xargs -P {CONCURRENCY} curl -sf --create-dirs -o` "
        "of the same files from /MAAS/images-stream/ (no hashing, no fsync), and "
        "`sstream-mirror --keyring region-keyring.gpg` of the region's stream (every item "
        "path, so a file two products share is fetched twice; verifies sha256; no fsync). "
        "Rack peak RSS: ru_maxrss from wait4 after SIGTERM right after its pull (start-up, "
        "registration, pull, gpg children); a child never reads below this script's own "
        'peak ("≤"). Other CPU: user CPU of the rest of the machine (region excluded; the '
        "machine is shared); a run with more than "
        f"{DISTURBED_CORES} cores of it on average was redone, up to {REDO_DISTURBED} times "
        f"within a {args.budget:.0f} s budget, keeping the least disturbed (column redone).",
        "",
        single_table(rows),
        "",
        "Where a rack's pull time goes (s, from its JSON log: metadata = index 304/200, gpg "
        "verify, parse, plan; download = `pull_planned` → last `download_finished`; publish "
        "= snapshot links, `current` switch, prune, gc, status):",
        "",
        phase_table(rows, ctx.rack_phases),
        "",
        "No-op poll: a synced rack restarted through this script's recording TCP proxy "
        "(sync interval 1 minute). Counted: HTTP bytes (request and response, headers and "
        "body) of the exchanges the rack opened between `pull_started` and `pull_finished`; "
        "TCP/IP headers are not counted (a connection reused from aiohttp's pool costs no "
        "handshake). The forced poll (`rack-controller import-boot-images`) re-reads the "
        "signed index and products on purpose and is shown for scale only.",
        "",
        poll_table(polls),
        "",
        *(f"- {v.line()}" for v in found),
    ]
    if profile is not None:
        parts += ["", "```", profile, "```"]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--file-size",
        default="80M",
        help="large files of the one-version stream (default 80M: 1.2 GiB)",
    )
    parser.add_argument("--racks", type=int, default=20, help="racks pulling at once")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work")
    parser.add_argument(
        "--budget",
        type=float,
        default=360.0,
        help="seconds after which no run waits for quiet or is redone",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile a rack pull even when every target is met"
    )
    parser.add_argument(
        "--no-results", action="store_true", help="print only; leave bench/RESULTS.md alone"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    started, load = time.monotonic(), load_average()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop what we started
    bootsync = find_program("bootsync", Path(sys.executable).parent / "bootsync")
    sstream = find_sstream_mirror()
    find_program("curl")
    nginx = ensure_nginx()
    work = (args.work / "rack").resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    stream = make_stream(
        bootsync, args.work.resolve(), args.file_size, parse_size(args.file_size), versions=1
    )
    with (
        nginx_serving(nginx, stream.root.parent, work / "nginx-upstream") as base,
        short_dir("bbk") as root,
        CpuSampler() as sampler,
    ):
        ctx = Context(
            work=work,
            logs=work / "logs",
            root=root,
            stream=stream,
            upstream=f"{base}{stream.root.name}/",
            secret_file=root / "rack-secret",
            sampler=sampler,
            pacer=Pacer(args.budget, user_only=True),
        )
        config = write_region_config(work / "regiond.toml")
        with region_running(root / "region", config, ctx.logs / "regiond.log") as region:
            sampler.watch.add(region.daemon.pid)
            ctx.secret_file.write_text(
                bootsync_cli("rack-secret", "--data-dir", str(root / "region")) + "\n"
            )
            print(f"{args.racks} racks at once", flush=True)
            swarms = [rack_swarm(region, args, ctx)]
            for rack_dir in root.glob("r[0-9]*"):
                if rack_dir.name != "r00":
                    shutil.rmtree(rack_dir)
            items = region_items(region.current_snapshot())
            blobs = unique_blobs(items)
            keyring = root / "region-keyring.gpg"
            with urllib.request.urlopen(region.stream_url() + "region-keyring.gpg") as resp:
                keyring.write_bytes(resp.read())
            with poll_probe(region, ctx, "r00") as probe:
                with nginx_process(nginx, region.current_snapshot(), work / "nginx-region") as (
                    ngx_url,
                    ngx,
                ):
                    swarms.append(
                        curl_swarm(
                            f"{args.racks} × curl ← nginx",
                            ngx_url,
                            blobs,
                            clients=args.racks,
                            ctx=ctx,
                            server_pids=lambda: children_of(ngx.pid),
                        )
                    )
                print(f"  {swarms[-1].name}: {swarms[-1].mib_s:.0f} MiB/s", flush=True)
                swarms.append(
                    curl_swarm(
                        f"{args.racks} × curl ← region",
                        region.stream_url(),
                        blobs,
                        clients=args.racks,
                        ctx=ctx,
                        server_pids=lambda: [region.daemon.pid],
                    )
                )
                print(f"  {swarms[-1].name}: {swarms[-1].mib_s:.0f} MiB/s", flush=True)
                print("one client at a time", flush=True)
                single = SingleBench(ctx, region, blobs, items, sstream, keyring)
                rows = single.run(args.repeat)
                print("no-op poll", flush=True)
                polls = probe.polls()
            found = verdicts(rows, swarms, polls)
            profile = profile_rack(single) if args.profile or not found[0].ok else None
    print()
    print(swarm_table(swarms))
    print()
    print(single_table(rows))
    print()
    print(phase_table(rows, ctx.rack_phases))
    print()
    print(poll_table(polls))
    print()
    for verdict in found:
        print(verdict.line())
    if profile is not None:
        print()
        print(profile)
    if not args.no_results:
        about = (
            f"{machine()}, load average {load} at the start; {versions(nginx, sstream)}; "
            f"daemon event loops as shipped: {shipped_loops()}"
        )
        write_section(
            SECTION,
            section(
                args,
                ctx,
                rows=rows,
                swarms=swarms,
                polls=polls,
                found=found,
                about=about,
                profile=profile,
            ),
        )
        print(f"\nwrote section {SECTION!r} of bench/RESULTS.md")
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"rack_bench: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("rack_bench: interrupted", file=sys.stderr)
        sys.exit(130)
