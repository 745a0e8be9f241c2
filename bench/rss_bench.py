"""Benchmark: peak memory of ``bootsync mirror``, the region import and the rack pull.

Targets (issue [6/6] item 6): each process peaks at ≤ 80 MiB RSS, and its peak grows
by ≤ 8 MiB between a stream of 8 MiB files and the same stream with one 1 GiB file.

Streams. One signed sample stream (``write_sample_stream``, one version per product,
15 large files of 8 MiB plus small ones) is written to /tmp/bbm*/streams/small; a
copy (hard links) in .../large has one item, the jammy/amd64 squashfs, replaced by
1 GiB of ``os.urandom`` (written in 8 MiB pieces) and its products document
re-signed with the same key. nginx serves both on 127.0.0.1.

Cases, each run once per stream, as real processes:

1. ``python -m common.cli mirror URL OUT --keyring K`` (after one unmeasured run that
   makes the mirror's signing key); for reference, one ``curl --parallel`` process
   fetching the same files and ``sstream-mirror --keyring K URL OUT``.
2. A ``bootsync-regiond`` on a fresh data directory, a wildcard selection, and
   ``op=import`` until its ``import_finished``.
3. A ``bootsync-rackd`` on a fresh data directory pulling from that region until its
   first pull that fetched files finished.

Peak RSS is the process's ``VmHWM`` (/proc/<pid>/status), read every 50 ms while it
runs and once more at the end for the daemons (which are still running then), so it
covers start-up, the work and, for the daemons, idle time. gpg children are separate
processes and not counted. (``ru_maxrss`` from wait4 is not used: Linux carries the
parent's peak across fork+exec, so a child's figure would never read below this
script's own.)

Results go to the "Memory (bench/rss_bench.py)" section of bench/RESULTS.md (a
hand-written ``### Analysis`` subsection there is kept). With ``--trace mirror`` the
mirror of the large stream runs once more under tracemalloc and the top allocation
sites (by size at the moment of the peak Python heap) are printed.

Run: ``.venv/bin/python bench/rss_bench.py [--no-results] [--trace mirror]`` (or
``make bench-rss``). Needs nginx (apt-get if missing), curl and sstream-mirror
(``make setup``). Data goes to /tmp/bbm* (about 4 GiB at the peak), removed at the
end; every process started is stopped, also on Ctrl-C. Takes about 3 minutes on 2
cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    GIB,
    MIB,
    REPO,
    BenchError,
    Verdict,
    ensure_nginx,
    find_program,
    find_sstream_mirror,
    load_average,
    machine,
    nginx_serving,
    stream_files,
    utc_date,
    wait_rusage,
    write_section,
)
from rack_bench import fetching_pull, rack_daemon
from region_bench import (
    Daemon,
    add_wildcard_source,
    bootsync_cli,
    kill_gpg_agents,
    region_running,
    short_dir,
    timed_import,
    write_region_config,
)

from common.mirror.samplestream import write_sample_stream
from common.trust.keyrings import SigningKey

SECTION = "## Memory (bench/rss_bench.py)"
SMALL = 8 * MIB
LARGE = GIB
TARGET_PEAK_MIB = 80.0
TARGET_GROWTH_MIB = 8.0
POLL_S = 0.05
CONCURRENCY = 8
RUN_TIMEOUT_S = 300.0
IMPORT_TIMEOUT_S = 300.0
BIG_ITEM = "squashfs"  # the jammy/amd64 squashfs becomes the 1 GiB file
BIG_PREFIX = "jammy/amd64/"


# ---------------------------------------------------------------- streams


@dataclass(frozen=True)
class Streams:
    """The two streams (same key, same items) and their keyring."""

    root: Path  # nginx serves this; small/ and large/ below it
    keyring: Path
    files: Mapping[str, Mapping[str, int]]  # stream name -> path -> size
    big_path: str


def _dump(doc: Any) -> bytes:  # as write_sample_stream dumps (sorted, indent 1)
    return json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"


def _write_random(target: Path, size: int) -> str:
    """``size`` bytes of os.urandom in 8 MiB pieces at ``target`` (a new inode); sha256."""
    target.unlink(missing_ok=True)  # a hard link to the small stream's file: break it
    digest = hashlib.sha256()
    with target.open("wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 8 * MIB))
            digest.update(piece)
            out.write(piece)
            left -= len(piece)
    return digest.hexdigest()


def _replace(target: Path, data: bytes) -> None:
    temp = target.with_name(target.name + ".new")
    temp.write_bytes(data)
    temp.replace(target)  # a new inode: the small stream's hard link keeps its bytes


def enlarge(root: Path, key: SigningKey, size: int) -> str:
    """Make the jammy/amd64 squashfs of the stream at ``root`` ``size`` bytes; its path."""
    index = json.loads((root / "streams/v1/index.json").read_bytes())
    for entry in index["index"].values():
        doc_path = root / entry["path"]
        doc = json.loads(doc_path.read_bytes())
        items = [
            item
            for product in doc["products"].values()
            for version in product["versions"].values()
            for item in version["items"].values()
            if item.get("ftype") == BIG_ITEM and str(item.get("path", "")).startswith(BIG_PREFIX)
        ]
        if not items:
            continue
        path = str(items[0]["path"])
        sha256 = _write_random(root / path, size)
        for item in items:
            item["sha256"], item["size"] = sha256, size
        payload = _dump(doc)
        _replace(doc_path, payload)
        _replace(doc_path.with_suffix(".sjson"), key.clearsign(payload))
        return path
    raise BenchError(f"no {BIG_PREFIX}…/{BIG_ITEM} item in {root}")


def write_streams(root: Path) -> Streams:
    """Write small/ (8 MiB files) and large/ (the same, one file 1 GiB) under ``root``."""
    started = time.monotonic()
    key = SigningKey.create(
        root / "key", name="bootsync rss bench", email="rss-bench@bootsync.invalid"
    )
    try:
        small = write_sample_stream(
            root / "streams" / "small", file_size=SMALL, versions=1, signing_key=key
        )
        shutil.copytree(
            root / "streams" / "small", root / "streams" / "large", copy_function=os.link
        )
        big = enlarge(root / "streams" / "large", key, LARGE)
    finally:
        key.close()
        kill_gpg_agents(root / "key")
    files = {name: stream_files(root / "streams" / name) for name in ("small", "large")}
    print(
        f"streams written in {time.monotonic() - started:.0f} s: small "
        f"{sum(files['small'].values()) / MIB:.0f} MiB in {len(files['small'])} files, "
        f"large {sum(files['large'].values()) / MIB:.0f} MiB ({big} is 1 GiB)",
        flush=True,
    )
    return Streams(root / "streams", small.keyring, files, big)


# ---------------------------------------------------------------- measuring


def _status_kib(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None  # a zombie has no mm left


class PeakRss:
    """Polls a process's VmHWM (and VmRSS) every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.hwm_kib = 0
        self.rss_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-poll", daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def poll(self) -> None:
        hwm, rss = _status_kib(self.pid, "VmHWM"), _status_kib(self.pid, "VmRSS")
        if hwm is not None:
            self.hwm_kib = max(self.hwm_kib, hwm)
            self.samples += 1
        if rss is not None:
            self.rss_kib = max(self.rss_kib, rss)

    def _run(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(POLL_S):
                return

    @property
    def mib(self) -> float:
        return self.hwm_kib / 1024


def run_polled(argv: list[str], env: Mapping[str, str], log: Path) -> float:
    """Run ``argv`` to completion; its peak VmHWM in MiB. BenchError unless it exits 0."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        with PeakRss(proc.pid) as peak:
            status, _usage = wait_rusage(proc, RUN_TIMEOUT_S)
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(
            f"{' '.join(argv[:4])} … exited {proc.returncode}; log {log}:\n"
            + log.read_text(errors="replace")[-1500:]
        )
    return peak.mib


def check_output(out: Path, files: Mapping[str, int], label: str) -> None:
    for path, size in files.items():
        if (out / path).stat().st_size != size:
            raise BenchError(f"{label}: {out / path} is not {size} bytes")


# ---------------------------------------------------------------- the cases


@dataclass
class Row:
    """One program's peak RSS for the small and the large stream."""

    name: str
    small_mib: float = 0.0
    large_mib: float = 0.0
    judged: bool = True  # reference rows (curl, sstream-mirror) have no target

    @property
    def growth_mib(self) -> float:
        return self.large_mib - self.small_mib

    def set(self, stream: str, mib: float) -> None:
        """Record a run; of repeated runs the highest peak counts (the target is a ceiling)."""
        if stream == "small":
            self.small_mib = max(self.small_mib, mib)
        else:
            self.large_mib = max(self.large_mib, mib)


@dataclass
class Bench:
    streams: Streams
    data: Path  # fresh per-run directories go below
    logs: Path
    sstream: Path
    nginx_url: str

    def url(self, stream: str) -> str:
        return f"{self.nginx_url}{stream}/"

    def mirror_argv(self, stream: str, out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "common.cli",
            "--log-format",
            "json",
            "mirror",
            self.url(stream),
            str(out),
            "--keyring",
            str(self.streams.keyring),
            "--concurrency",
            str(CONCURRENCY),
            "--no-progress",
        ]

    def mirror(self, stream: str, label: str) -> float:
        out = self.data / "mirror-out"
        shutil.rmtree(out, ignore_errors=True)
        env = {"XDG_DATA_HOME": str(self.data / "xdg")}  # the mirror's own signing key
        mib = run_polled(self.mirror_argv(stream, out), env, self.logs / f"{label}.log")
        check_output(out, self.streams.files[stream], label)
        shutil.rmtree(out)
        return mib

    def curl(self, stream: str, label: str) -> float:
        out = self.data / "curl-out"
        shutil.rmtree(out, ignore_errors=True)
        config = self.data / "curl.conf"
        config.write_text(
            "".join(
                f'url = "{self.url(stream)}{p}"\noutput = "{out / p}"\n'
                for p in self.streams.files[stream]
            )
        )
        argv = [
            "curl",
            "-sf",
            "--parallel",
            "--parallel-max",
            str(CONCURRENCY),
            "--create-dirs",
            "-K",
            str(config),
        ]
        mib = run_polled(argv, {}, self.logs / f"{label}.log")
        check_output(out, self.streams.files[stream], label)
        shutil.rmtree(out)
        return mib

    def sstream_mirror(self, stream: str, label: str) -> float:
        out = self.data / "sstream-out"
        shutil.rmtree(out, ignore_errors=True)
        gnupg = self.data / "gnupg-empty"  # sstream-mirror's GNUPGHOME: trusts only --keyring
        shutil.rmtree(gnupg, ignore_errors=True)
        gnupg.mkdir(mode=0o700)
        argv = [
            str(self.sstream),
            "--keyring",
            str(self.streams.keyring),
            self.url(stream),
            str(out),
        ]
        mib = run_polled(argv, {"GNUPGHOME": str(gnupg)}, self.logs / f"{label}.log")
        check_output(out, self.streams.files[stream], label)
        shutil.rmtree(out)
        return mib

    def region_and_rack(self, stream: str, label: str) -> tuple[float, float]:
        """A fresh region imports ``stream``, then a fresh rack pulls it; both peaks."""
        with short_dir("bbm") as root:
            config = write_region_config(root / "regiond.toml", concurrency=CONCURRENCY)
            log = self.logs / f"regiond-{label}.log"  # a fresh log: events are read from it
            with region_running(root / "region", config, log) as region:
                with PeakRss(region.daemon.pid) as region_peak:
                    add_wildcard_source(region, self.url(stream), self.streams.keyring)
                    timing = timed_import(region)
                    region_peak.poll()
                print(
                    f"  region import ({stream}): {timing.seconds:.1f} s, "
                    f"{timing.summary.get('bytes', '?')} bytes, peak {region_peak.mib:.1f} MiB",
                    flush=True,
                )
                secret = root / "rack-secret"
                secret.write_text(
                    bootsync_cli("rack-secret", "--data-dir", str(root / "region")) + "\n"
                )
                rack = rack_daemon(
                    root,
                    f"rack-{label}",
                    region_url=region.daemon.url,
                    secret_file=secret,
                    logs=self.logs,
                )
                rack_peak = self._rack(rack)
                kill_gpg_agents(root)
        return region_peak.mib, rack_peak

    def _rack(self, rack: Daemon) -> float:
        try:
            rack.launch()
            with PeakRss(rack.pid) as peak:
                _started, finished = fetching_pull(rack, timeout_s=IMPORT_TIMEOUT_S)
                peak.poll()
        finally:
            rack.stop()
        print(
            f"  rack pull: {float(finished['duration_s']):.1f} s, {finished['bytes']} bytes, "
            f"peak {peak.mib:.1f} MiB",
            flush=True,
        )
        return peak.mib


def run_cases(bench: Bench, repeat: int) -> list[Row]:
    rows = {
        "mirror": Row("bootsync mirror"),
        "region": Row("bootsync-regiond (import)"),
        "rack": Row("bootsync-rackd (pull)"),
        "curl": Row(f"curl --parallel-max {CONCURRENCY} (reference)", judged=False),
        "sstream": Row("sstream-mirror (reference)", judged=False),
    }
    bench.mirror("small", "mirror-warmup")  # unmeasured: makes the mirror's signing key
    for rep, stream in [(r, name) for r in range(repeat) for name in ("small", "large")]:
        print(f"stream {stream}, run {rep + 1} of {repeat}", flush=True)
        for key, run in (
            ("mirror", bench.mirror),
            ("curl", bench.curl),
            ("sstream", bench.sstream_mirror),
        ):
            mib = run(stream, f"{key}-{stream}-{rep}")
            rows[key].set(stream, mib)
            print(f"  {rows[key].name}: peak {mib:.1f} MiB", flush=True)
        region_mib, rack_mib = bench.region_and_rack(stream, f"{stream}-{rep}")
        rows["region"].set(stream, region_mib)
        rows["rack"].set(stream, rack_mib)
    return list(rows.values())


# ---------------------------------------------------------------- tracemalloc


TRACE_CHILD = """\
import runpy, sys, threading, time, tracemalloc
tracemalloc.start(25)
peak = [0, None]
def watch():
    while True:
        size, top = tracemalloc.get_traced_memory()
        if size > peak[0] * 1.05 + (1 << 20):
            peak[0], peak[1] = size, tracemalloc.take_snapshot()
        time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
base = tracemalloc.take_snapshot()
sys.argv = ["bootsync", *sys.argv[1:]]
try:
    runpy.run_module("common.cli", run_name="__main__")
except SystemExit:
    pass
finally:
    current, top = tracemalloc.get_traced_memory()
    print(f"TRACE python heap: peak {top / 2**20:.1f} MiB, at exit {current / 2**20:.1f} MiB")
    if peak[1] is not None:
        for stat in peak[1].compare_to(base, "traceback")[:8]:
            print(f"TRACE {stat.size_diff / 2**20:+.1f} MiB in {stat.count_diff:+d} blocks")
            for line in stat.traceback.format()[-8:]:
                print("TRACE    " + line)
"""


def trace_mirror(bench: Bench) -> str:
    """The large-stream mirror under tracemalloc: top allocation sites at the heap's peak."""
    out = bench.data / "mirror-out"
    shutil.rmtree(out, ignore_errors=True)
    argv = bench.mirror_argv("large", out)
    argv[1:3] = ["-c", TRACE_CHILD]
    log = bench.logs / "mirror-trace.log"
    run_polled(argv, {"XDG_DATA_HOME": str(bench.data / "xdg")}, log)
    shutil.rmtree(out, ignore_errors=True)
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("TRACE")]
    return "\n".join(ln.removeprefix("TRACE ") for ln in lines)


# ---------------------------------------------------------------- reporting


def verdicts(rows: list[Row]) -> list[Verdict]:
    found = []
    for row in rows:
        if not row.judged:
            continue
        peak = max(row.small_mib, row.large_mib)
        found.append(
            Verdict(
                f"{row.name} peak RSS",
                f"{peak:.1f} MiB",
                f"≤ {TARGET_PEAK_MIB:.0f} MiB",
                peak <= TARGET_PEAK_MIB,
            )
        )
        found.append(
            Verdict(
                f"{row.name} growth 8 MiB → 1 GiB files",
                f"{row.growth_mib:+.1f} MiB",
                f"≤ {TARGET_GROWTH_MIB:.0f} MiB",
                row.growth_mib <= TARGET_GROWTH_MIB,
            )
        )
    return found


def table(rows: list[Row]) -> str:
    lines = [
        "| process | peak RSS, 8 MiB files | peak RSS, one 1 GiB file | growth | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.judged:
            ok = (
                max(row.small_mib, row.large_mib) <= TARGET_PEAK_MIB
                and row.growth_mib <= TARGET_GROWTH_MIB
            )
            verdict = "PASS" if ok else "MISS"
        else:
            verdict = "reference"
        lines.append(
            f"| {row.name} | {row.small_mib:.1f} MiB | {row.large_mib:.1f} MiB | "
            f"{row.growth_mib:+.1f} MiB | {verdict} |"
        )
    return "\n".join(lines)


def section(
    rows: list[Row], found: list[Verdict], *, repeat: int, about: str, trace: str | None
) -> str:
    runs = "one run" if repeat == 1 else f"{repeat} interleaved runs, the highest peak"
    parts = [
        f"{SECTION}\n",
        f"Run {utc_date()} by `make bench-rss` (`bench/rss_bench.py`, {runs} per case "
        f"and stream); {about}.\n",
        "Peak RSS = the process's VmHWM (/proc/<pid>/status, polled every 50 ms and read "
        "again at the end), start-up included; gpg children not counted. Streams: the "
        "one-version sample stream with 15 files of 8 MiB (≈ 121 MiB), and the same with "
        "the jammy/amd64 squashfs made 1 GiB (≈ 1.11 GiB), served by nginx on 127.0.0.1. "
        "Region: fresh data dir, wildcard selection, `op=import` → `import_finished`. "
        "Rack: fresh data dir, first pull from that region. The reference rows fetch the "
        "mirror's files (one `curl --parallel` process; `sstream-mirror --keyring`).\n",
        table(rows) + "\n",
        "```\n" + "\n".join(v.line() for v in found) + "\n```\n",
    ]
    if trace:
        parts.append(
            "tracemalloc, `bootsync mirror` of the large stream:\n\n```\n" + trace + "\n```\n"
        )
    return "\n".join(parts)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--no-results", action="store_true", help="do not write bench/RESULTS.md")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per case and stream, interleaved; the highest peak counts (default 1)",
    )
    p.add_argument(
        "--trace",
        choices=("mirror",),
        help="also run the large mirror under tracemalloc and print the top allocation sites",
    )
    return p.parse_args()


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop what we started
    load = load_average()
    started = time.monotonic()
    sstream = find_sstream_mirror()
    find_program("curl")
    nginx = ensure_nginx()
    free = shutil.disk_usage("/tmp").free
    if free < 6 * GIB:
        raise BenchError(f"/tmp has {free / GIB:.1f} GiB free; this needs about 4 GiB")
    with short_dir("bbm") as root:
        logs = REPO / "bench" / "work" / "rss" / "logs"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
        streams = write_streams(root)
        with nginx_serving(nginx, streams.root, root / "nginx") as base:
            bench = Bench(streams, root, logs, sstream, base)
            rows = run_cases(bench, args.repeat)
            trace = trace_mirror(bench) if args.trace == "mirror" else None
    found = verdicts(rows)
    print()
    print(table(rows))
    print()
    for verdict in found:
        print(verdict.line())
    if trace:
        print()
        print(trace)
    end_load = load_average()
    print(
        f"\nload average {load} at the start, {end_load} at the end; "
        f"{time.monotonic() - started:.0f} s"
    )
    if not args.no_results:
        about = (
            f"{machine()}; load average {load} at the start, {end_load} at the end (shared machine)"
        )
        write_section(SECTION, section(rows, found, repeat=args.repeat, about=about, trace=trace))
        print(f"wrote section {SECTION!r} of bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"rss_bench: {exc}", file=sys.stderr)
        sys.exit(1)
