"""Benchmark: ``bootsync mirror`` against curl and Canonical's sstream-mirror.

A signed sample stream (30 large files of ``--file-size`` plus 20 small ones,
≥ 1 GiB at the default 40M) is served by nginx on 127.0.0.1. Each tool copies
the whole stream into a fresh empty directory, page cache warm, ``--repeat``
times, interleaved so drift hits all alike (each run waits for the shared
machine to be quiet, and a run disturbed by other work is measured again):

* ``bootsync mirror`` (verifies signatures and sha256s, fsyncs), once with
  ``BOOTSYNC_EVENT_LOOP=uvloop`` and once with ``asyncio``;
* ``xargs -P 8 curl`` (no hashing, no fsync): the download floor;
* ``sstream-mirror`` (verifies, all versions, one file at a time).

bootsync also mirrors a second stream of smaller files, to see whether its
peak RSS grows with file size. Peak RSS is ``ru_maxrss`` from ``os.wait4`` on
the child, which on Linux also covers the descendants it waited for (gpg for
the mirrors; for xargs it is the largest single curl). The script prints a
table with PASS/MISS per target and writes its section of bench/RESULTS.md
(keeping a hand-written ``### Analysis`` there). When a target is missed it
also runs bootsync once under cProfile. At the end it stops the gpg-agent that
``bootsync mirror`` leaves running in its signing key's home.

Run: ``.venv/bin/python bench/mirror_bench.py [--file-size 40M] [--work DIR]``
(or ``make bench``). Needs nginx (installed with apt-get if missing), curl,
xargs and sstream-mirror (``make setup``; ``$SSTREAM_BIN`` names its bin dir).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import pstats
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## bootsync mirror vs curl and sstream-mirror"
ANALYSIS = "### Analysis"
MIB = 1 << 20
RUN_TIMEOUT_S = 120.0
CONCURRENCY = 8
TARGET_SPEEDUP = 2.0
TARGET_CURL_FRACTION = 0.65
TARGET_RSS_MIB = 80.0
# Peak RSS counts as flat when the large-file run is within this of the small-file run.
FLAT_SLACK_MIB = 8.0
LOOPS = ("uvloop", "asyncio")
# The machine may be shared: a run during which the rest of it (nginx included) used more
# than this many cores on average is measured again, at most REDO_DISTURBED times.
DISTURBED_CORES = 0.25
REDO_DISTURBED = 2
QUIET_WAIT_S = 20.0


class BenchError(Exception):
    """A step failed; the message says which one and why."""


@dataclass(frozen=True)
class Stream:
    """A sample stream on disk and the data files its products documents list."""

    root: Path
    keyring: Path
    file_size: int
    files: Mapping[str, int]  # path -> size

    @property
    def total(self) -> int:
        return sum(self.files.values())


@dataclass(frozen=True)
class Sample:
    """One measured run."""

    seconds: float
    rss_kib: int
    rss_floor_kib: int  # this script's own peak RSS: ru_maxrss cannot go below it
    cpu_s: float  # user + sys, the child and the descendants it waited for
    other_cpu_s: float  # the rest of the machine meanwhile, nginx included
    phases: Mapping[str, float]  # bootsync only: where the wall time went


@dataclass(frozen=True)
class Tool:
    """A way to copy the stream: argv and extra environment for (url, out, stream)."""

    name: str
    command: Callable[[str, Path, Stream], list[str]]
    env: Mapping[str, str]
    is_bootsync: bool = False


@dataclass
class Row:
    """The samples of one tool on one stream."""

    tool: Tool
    stream: Stream
    samples: list[Sample]
    redone: int = 0  # runs thrown away because other processes took the CPU

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def mib_s(self) -> float:
        return self.stream.total / MIB / self.seconds

    @property
    def rss_mib(self) -> float:  # the worst repeat, not the median: a ceiling is the target
        return max(s.rss_kib for s in self.samples) / 1024

    @property
    def rss_text(self) -> str:
        """Peak RSS in MiB; "≤ x" when it is only this script's floor (see measure())."""
        worst = max(self.samples, key=lambda s: s.rss_kib)
        bound = "≤ " if worst.rss_kib <= worst.rss_floor_kib else ""
        return f"{bound}{worst.rss_kib / 1024:.1f}"

    @property
    def best_s(self) -> float:
        return min(s.seconds for s in self.samples)

    @property
    def cpu_s(self) -> float:
        return statistics.median(s.cpu_s for s in self.samples)

    @property
    def other_cpu_s(self) -> float:
        return statistics.median(s.other_cpu_s for s in self.samples)

    def phase(self, name: str) -> float:
        return statistics.median(s.phases.get(name, 0.0) for s in self.samples)


# ---------------------------------------------------------------- setup


def find_program(name: str, *candidates: Path) -> Path:
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} not found (looked in {', '.join(map(str, candidates))} "
                         "and $PATH); run `make setup`")
    return Path(found)


def ensure_nginx() -> Path:
    """nginx on PATH (or /usr/sbin), installed with apt-get when missing."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found:
        return Path(found)
    print("nginx missing: apt-get install -y nginx", flush=True)
    install = ["apt-get", "install", "-y", "nginx"]
    if subprocess.run(install, check=False, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not found:
        raise BenchError("apt-get installed nginx but no nginx binary was found")
    return Path(found)


def stream_files(root: Path) -> dict[str, int]:
    """Every item path and size in the stream's products documents."""
    index = json.loads((root / "streams/v1/index.json").read_bytes())
    files: dict[str, int] = {}
    for entry in index["index"].values():
        doc = json.loads((root / entry["path"]).read_bytes())
        for product in doc["products"].values():
            for version in product["versions"].values():
                for item in version["items"].values():
                    if "path" in item:
                        files[item["path"]] = int(item["size"])
    return files


def make_stream(bootsync: Path, work: Path, size_text: str, file_size: int) -> Stream:
    """The sample stream ``work/streams/stream-<size>``, reused when one of that size is there."""
    root = work / "streams" / f"stream-{size_text}"
    marker = root / ".bench-file-size"
    if not (marker.is_file() and marker.read_text().strip() == str(file_size)):
        shutil.rmtree(root, ignore_errors=True)
        print(f"writing sample stream {root} (--file-size {size_text})", flush=True)
        subprocess.run([str(bootsync), "--log-level", "warning", "sample-stream", str(root),
                        "--file-size", size_text], check=True, stdout=subprocess.DEVNULL)
        marker.write_text(f"{file_size}\n")
    stream = Stream(root=root, keyring=root / "sample-keyring.gpg", file_size=file_size,
                    files=stream_files(root))
    large = sum(1 for size in stream.files.values() if size == file_size)
    print(f"stream {root.name}: {len(stream.files)} files ({large} of {size_text}), "
          f"{stream.total} bytes = {stream.total / (1 << 30):.2f} GiB", flush=True)
    return stream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


NGINX_CONF = """\
{user}worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


@contextmanager
def nginx_serving(nginx: Path, root: Path, prefix: Path) -> Iterator[str]:
    """Serve ``root`` on a free loopback port; yields the base URL; stops nginx by PID."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    # As root, the workers would drop to "nobody", who may not read the work dir.
    user = f"user {pwd.getpwuid(0).pw_name};\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, prefix=prefix, port=port, root=root))
    log = (prefix / "nginx.out").open("wb")
    proc = subprocess.Popen([str(nginx), "-p", str(prefix), "-c", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise BenchError(f"nginx exited ({proc.returncode}): "
                                 f"{(prefix / 'nginx.out').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"nginx did not listen on 127.0.0.1:{port}") from None
                time.sleep(0.05)
        print(f"nginx {proc.pid} serving {root} on 127.0.0.1:{port}", flush=True)
        yield f"http://127.0.0.1:{port}/"
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@contextmanager
def agent_stopped(xdg: Path) -> Iterator[None]:
    """Stop the gpg-agent that ``bootsync mirror`` leaves running in its key's home."""
    try:
        yield
    finally:
        home = xdg / "bootsync" / "mirror-signing-key"
        if home.is_dir():
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                           check=False, capture_output=True)


# ---------------------------------------------------------------- measuring


def busy_cpu_s() -> float:
    """User + system CPU seconds the whole machine has spent since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system = (int(v) for v in fields[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    """What one process tree used."""

    seconds: float
    rss_kib: int
    rss_floor_kib: int
    cpu_s: float
    other_cpu_s: float  # CPU the rest of the machine (nginx included) used meanwhile


def measure(argv: list[str], env: Mapping[str, str], log: Path) -> Measured:
    """Run ``argv`` to completion and measure it. Raises BenchError if it fails.

    Linux keeps a process's ru_maxrss across exec, and a child spawned from here
    starts with this script's peak RSS; so a child's figure is never below ours
    (``rss_floor_kib``), and one at that floor is only an upper bound.
    """
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with log.open("wb") as out:
        busy_before = busy_cpu_s()
        started = time.monotonic()
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        timer = threading.Timer(RUN_TIMEOUT_S, os.killpg, (proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            timer.cancel()
        seconds = time.monotonic() - started
        busy = busy_cpu_s() - busy_before
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise BenchError(f"{' '.join(argv[:2])} … exited {code} (timeout "
                         f"{RUN_TIMEOUT_S:.0f} s if killed); log {log}:\n{tail}")
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(seconds=seconds, rss_kib=usage.ru_maxrss, rss_floor_kib=floor, cpu_s=cpu,
                    other_cpu_s=max(0.0, busy - cpu))


def bootsync_phases(log: Path, seconds: float) -> dict[str, float]:
    """Split a bootsync run's wall time by its log events."""
    stamps: dict[str, list[float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        when = datetime.fromisoformat(event["timestamp"]).timestamp()
        stamps.setdefault(event["event"], []).append(when)
    try:
        begin = stamps["mirror_started"][0]
        first = min(stamps["download_started"])
        last = max(stamps["download_finished"])
        end = stamps["mirror_finished"][0]
    except KeyError as exc:
        raise BenchError(f"{log}: no {exc} event; cannot split the time") from None
    inside = end - begin
    return {"startup+exit": seconds - inside, "metadata": first - begin,
            "download": last - first, "publish": end - last}


def check_output(out: Path, stream: Stream) -> None:
    for path, size in stream.files.items():
        target = out / path
        if not target.is_file() or target.stat().st_size != size:
            raise BenchError(f"{target}: missing or not {size} bytes after the run")


def run_once(tool: Tool, stream: Stream, url: str, work: Path, label: str) -> Sample:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    os.sync()  # write-back of the previous run must not land in this one
    out.mkdir()
    log = work / "logs" / f"{label}.log"
    got = measure(tool.command(url, out, stream), tool.env, log)
    check_output(out, stream)
    phases = bootsync_phases(log, got.seconds) if tool.is_bootsync else {}
    shutil.rmtree(out)
    return Sample(seconds=got.seconds, rss_kib=got.rss_kib, rss_floor_kib=got.rss_floor_kib,
                  cpu_s=got.cpu_s,
                  other_cpu_s=got.other_cpu_s, phases=phases)


def warm_cache(url: str, stream: Stream, work: Path) -> None:
    """One curl pass to /dev/null: nginx and the page cache see every file once."""
    listing = work / "warm.txt"
    listing.write_text("".join(f"/dev/null {url}{p}\n" for p in stream.files))
    measure(["xargs", "-a", str(listing), "-P", str(CONCURRENCY), "-n", "2",
             "curl", "-sf", "-o"], {}, work / "logs" / "warm.log")


def make_tools(bootsync: Path, sstream: Path, work: Path) -> list[Tool]:
    gnupg = work / "gnupg-empty"  # sstream-mirror's GNUPGHOME: trusts only --keyring
    xdg = {"XDG_DATA_HOME": str(work / "xdg")}  # the mirror's own signing key lives here

    def bootsync_cmd(url: str, out: Path, stream: Stream) -> list[str]:
        return [str(bootsync), "--log-format", "json", "mirror", url, str(out),
                "--keyring", str(stream.keyring), "--max", "2",
                "--concurrency", str(CONCURRENCY), "--no-progress"]

    def curl_cmd(url: str, out: Path, stream: Stream) -> list[str]:
        listing = work / "curl-list.txt"
        listing.write_text("".join(f"{out / p} {url}{p}\n" for p in stream.files))
        return ["xargs", "-a", str(listing), "-P", str(CONCURRENCY), "-n", "2",
                "curl", "-sf", "--create-dirs", "-o"]

    def sstream_cmd(url: str, out: Path, stream: Stream) -> list[str]:
        shutil.rmtree(gnupg, ignore_errors=True)  # empty again for every run
        gnupg.mkdir(mode=0o700)
        return [str(sstream), "--keyring", str(stream.keyring), url, str(out)]

    return [
        *(Tool(f"bootsync ({loop})", bootsync_cmd, {**xdg, "BOOTSYNC_EVENT_LOOP": loop},
               is_bootsync=True) for loop in LOOPS),
        Tool(f"xargs -P {CONCURRENCY} curl", curl_cmd, {}),
        Tool("sstream-mirror", sstream_cmd, {"GNUPGHOME": str(gnupg)}),
    ]


class Pacer:
    """Keeps runs away from other work on a shared machine, within a time budget.

    Before each run it waits (at most QUIET_WAIT_S) until the rest of the machine
    uses under DISTURBED_CORES; past the deadline it neither waits nor redoes runs.
    """

    def __init__(self, budget_s: float) -> None:
        self._deadline = time.monotonic() + budget_s

    def in_budget(self) -> bool:
        return time.monotonic() < self._deadline

    def settle(self) -> None:
        give_up = min(self._deadline, time.monotonic() + QUIET_WAIT_S)
        while time.monotonic() < give_up:
            before = busy_cpu_s()
            time.sleep(0.5)
            if busy_cpu_s() - before < DISTURBED_CORES * 0.5:
                return


def run_rows(tools: list[Tool], stream: Stream, url: str, work: Path, *, repeat: int,
             pacer: Pacer) -> list[Row]:
    """Measure every tool ``repeat`` times, interleaved; disturbed runs are redone."""
    rows = [Row(tool, stream, []) for tool in tools]
    for rep in range(repeat):
        for row in rows:
            for attempt in range(1 + REDO_DISTURBED):
                pacer.settle()
                sample = run_once(row.tool, stream, url, work,
                                  f"{_slug(row.tool.name)}-{stream.root.name}-{rep}-{attempt}")
                disturbed = sample.other_cpu_s > DISTURBED_CORES * sample.seconds
                print(f"  {row.tool.name:<22} {stream.root.name:<12} run {rep + 1}: "
                      f"{sample.seconds:6.2f} s  {sample.rss_kib / 1024:6.1f} MiB  "
                      f"CPU {sample.cpu_s:5.2f} s  other CPU {sample.other_cpu_s:5.2f} s"
                      f"{'  disturbed' if disturbed else ''}", flush=True)
                if not disturbed or not pacer.in_budget():
                    break
                row.redone += 1
            row.samples.append(sample)
    return rows


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def profile_bootsync(stream: Stream, url: str, work: Path, loop: str) -> str:
    """Run bootsync once under cProfile (event-loop thread only); the top functions."""
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    stats_file = work / "bootsync.pstats"
    argv = [sys.executable, "-m", "cProfile", "-o", str(stats_file), "-m", "common.cli",
            "--log-format", "json", "mirror", url, str(out), "--keyring", str(stream.keyring),
            "--max", "2", "--concurrency", str(CONCURRENCY), "--no-progress"]
    env = {"XDG_DATA_HOME": str(work / "xdg"), "BOOTSYNC_EVENT_LOOP": loop}
    seconds = measure(argv, env, work / "logs" / "profile.log").seconds
    shutil.rmtree(out, ignore_errors=True)
    text = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(18)
    body = text.getvalue()
    body = body[body.find("   ncalls"):].rstrip()
    # asyncio's loop thread is idle only inside epoll.poll; the rest of the run it is busy.
    idle = sum(entry[2] for func, entry in stats.stats.items()  # type: ignore[attr-defined]
               if func[2] == "<method 'poll' of 'select.epoll' objects>")
    return (f"cProfile, {loop} loop, {seconds:.2f} s under the profiler; the event-loop "
            f"thread waited in epoll {idle:.2f} s, so it was busy for the rest. "
            f"Top by tottime:\n\n{body}")


# ---------------------------------------------------------------- reporting


@dataclass(frozen=True)
class Verdict:
    """One target: what was measured against what was wanted."""

    what: str
    measured: str
    target: str
    ok: bool

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'MISS'}  {self.what}: {self.measured} " \
               f"(target {self.target})"


def verdicts(large: list[Row], small: list[Row]) -> list[Verdict]:
    by_name = {row.tool.name: row for row in large}
    curl = by_name[f"xargs -P {CONCURRENCY} curl"]
    sstream = by_name["sstream-mirror"]
    small_by = {row.tool.name: row for row in small}
    found = []
    for loop in LOOPS:
        boot = by_name[f"bootsync ({loop})"]
        speedup = sstream.seconds / boot.seconds
        fraction = boot.mib_s / curl.mib_s
        grown = boot.rss_mib - small_by[boot.tool.name].rss_mib
        found += [
            Verdict(f"{loop}: speed-up over sstream-mirror", f"{speedup:.2f}×",
                    f"≥ {TARGET_SPEEDUP:.1f}×", speedup >= TARGET_SPEEDUP),
            Verdict(f"{loop}: throughput vs curl", f"{fraction:.2f}×",
                    f"≥ {TARGET_CURL_FRACTION:.2f}×", fraction >= TARGET_CURL_FRACTION),
            Verdict(f"{loop}: peak RSS", f"{boot.rss_mib:.1f} MiB",
                    f"≤ {TARGET_RSS_MIB:.0f} MiB", boot.rss_mib <= TARGET_RSS_MIB),
            Verdict(f"{loop}: RSS flat with file size",
                    f"{small_by[boot.tool.name].rss_mib:.1f} MiB at "
                    f"{_size(small[0].stream.file_size)} → {boot.rss_mib:.1f} MiB at "
                    f"{_size(boot.stream.file_size)} ({grown:+.1f} MiB)",
                    f"growth ≤ {FLAT_SLACK_MIB:.0f} MiB", grown <= FLAT_SLACK_MIB),
        ]
    return found


def _size(nbytes: int) -> str:
    return f"{nbytes / MIB:g} MiB"


def table(rows: list[Row]) -> str:
    lines = ["| tool | stream | median s | best s | MiB/s | peak RSS MiB | CPU s | other CPU s "
             "| runs (s) | redone |", "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for row in rows:
        runs = ", ".join(f"{s.seconds:.2f}" for s in row.samples)
        lines.append(f"| {row.tool.name} | {len(row.stream.files)} files, "
                     f"{row.stream.total / MIB:.0f} MiB | {row.seconds:.2f} | {row.best_s:.2f} | "
                     f"{row.mib_s:.0f} | {row.rss_text} | {row.cpu_s:.2f} | "
                     f"{row.other_cpu_s:.2f} | {runs} | {row.redone} |")
    return "\n".join(lines)


def phase_table(rows: list[Row]) -> str:
    names = ("startup+exit", "metadata", "download", "publish")
    lines = ["| bootsync run | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for row in rows:
        if row.tool.is_bootsync:
            cells = " | ".join(f"{row.phase(n):.2f}" for n in names)
            lines.append(f"| {row.tool.name}, {_size(row.stream.file_size)} files | {cells} |")
    return "\n".join(lines)


def recommend(large: list[Row]) -> str:
    """Which loop ``bootsync mirror`` should default to, and why, in one paragraph.

    A speed gap counts only when the medians differ by ≥ 5 % and the best runs
    agree on the order; otherwise the loop with the lower peak RSS wins (by ≥ 5 MiB).
    """
    text = (REPO / "common/cli/mirror_cmd.py").read_text()
    match = re.search(r'^MIRROR_LOOP\b.*?"(\w+)"', text, re.MULTILINE)
    current = match[1] if match else "unknown"
    rows = {loop: next(r for r in large if r.tool.name == f"bootsync ({loop})")
            for loop in LOOPS}
    fast = min(LOOPS, key=lambda loop: rows[loop].seconds)
    slow = max(LOOPS, key=lambda loop: rows[loop].seconds)
    gap = rows[slow].seconds / rows[fast].seconds - 1
    best_agrees = rows[fast].best_s <= rows[slow].best_s
    lean = min(LOOPS, key=lambda loop: rows[loop].rss_mib)
    rss_gap = max(r.rss_mib for r in rows.values()) - rows[lean].rss_mib
    facts = "; ".join(f"{loop}: median {r.seconds:.2f} s, best {r.best_s:.2f} s, peak RSS "
                      f"{r.rss_mib:.1f} MiB" for loop, r in rows.items())
    if gap >= 0.05 and best_agrees:
        choice, why = fast, f"{fast} is {gap:.0%} faster (median, and in the best runs)"
    elif rss_gap >= 5:
        choice = lean
        why = (f"speed is within noise ({gap:.0%} apart, best runs "
               f"{'agree' if best_agrees else 'disagree'}) and {lean} needs "
               f"{rss_gap:.0f} MiB less memory")
    else:
        choice, why = current, "no measurable difference in speed or memory"
    verdict = (f"keep `MIRROR_LOOP = \"{current}\"`" if choice == current else
               f"switch `MIRROR_LOOP` from \"{current}\" to \"{choice}\"")
    return f"Event loop ({facts}): {why}; {verdict}."


def machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return (f"nproc {nproc.strip()}, CPU {cpu}, {mem:.0f} GiB RAM, kernel "
            f"{platform.release()}, Python {platform.python_version()}")


def versions(nginx: Path, sstream: Path) -> str:
    from importlib.metadata import version  # noqa: PLC0415 - only for the report

    ngx = subprocess.run([str(nginx), "-v"], capture_output=True, text=True, check=False)
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False)
    pkg = subprocess.run([str(sstream.parent / "python"), "-c",
                          "from importlib.metadata import version as v; "
                          "print(v('python-simplestreams'))"],
                         capture_output=True, text=True, check=False)
    return (f"{ngx.stderr.strip()}; {' '.join(curl.stdout.split()[:2])}; python-simplestreams "
            f"{pkg.stdout.strip() or '?'}; aiohttp {version('aiohttp')}, "
            f"uvloop {version('uvloop')}")


def section(args: argparse.Namespace, rows: list[Row], found: list[Verdict], *, advice: str,
            about: str, profile: str | None) -> str:
    date = subprocess.run(["date", "-u"], capture_output=True, text=True, check=True).stdout
    parts = [
        SECTION, "",
        f"Run {date.strip()} with `.venv/bin/python bench/mirror_bench.py --file-size "
        f"{args.file_size} --small-file-size {args.small_file_size} --repeat {args.repeat}`.",
        f"Machine: {about}.", "",
        f"Each tool copies every file of the stream from nginx on 127.0.0.1 (sendfile, 2 "
        f"workers) into a fresh empty directory, page cache warm, {args.repeat} runs "
        f"interleaved; the median is shown. MiB/s is the stream's data bytes over the whole "
        f"wall time (startup, metadata, gpg included). bootsync: `--max 2 --concurrency "
        f"{CONCURRENCY}`, sha256 of every byte, fsync of every blob, its own signed metadata. "
        f"curl: `xargs -P {CONCURRENCY} curl -sf --create-dirs -o`, no hashing, no fsync. "
        "sstream-mirror: all versions, checksums verified while reading, one file at a time, "
        "no fsync. CPU s is user + sys of the client (median); other CPU s is what the rest of "
        "the machine used meanwhile (nginx included; the machine is shared with other work), "
        f"each run waits (up to {QUIET_WAIT_S:.0f} s) for that to fall under "
        f"{DISTURBED_CORES} cores, and a run during which it exceeded {DISTURBED_CORES} cores "
        f"on average was thrown away and measured again (up to {REDO_DISTURBED} times, "
        f"within a {args.budget:.0f} s budget; column redone). "
        "Peak RSS is ru_maxrss from wait4 (the worst of the runs): for the mirrors it covers "
        "the gpg children too; for xargs it is the largest single curl, and "
        f"{CONCURRENCY} of them run at once. Linux carries ru_maxrss across exec, so a child "
        "never reads below this script's own peak; \"≤\" marks a figure at that floor, an "
        "upper bound only.", "",
        table(rows), "",
        "Where bootsync's wall time goes (median s, from its log events: startup+exit is "
        "interpreter start, imports and keyring load before `mirror_started` plus teardown "
        "after `mirror_finished`; metadata is index and products fetch, gpg verify, parse, "
        "plan; publish is hard links, signing, state and gc):", "",
        phase_table(rows), "",
        *(f"- {v.line()}" for v in found), "",
        advice,
    ]
    if profile is not None:
        parts += ["", "A target was missed, so bootsync ran once more under cProfile "
                  "(the event-loop thread only; hashing and writes run in worker threads "
                  "and appear as waits):", "", "```", profile, "```"]
    return "\n".join(parts) + "\n"


def write_results(text: str) -> None:
    """Replace this script's section of RESULTS.md (or add it); other sections stay.

    A hand-written ``### Analysis`` subsection of the old section is carried over.
    """
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    chunks = re.split(r"(?m)^(?=## )", old)
    ours = [c for c in chunks if c.startswith(SECTION)]
    kept = [c for c in chunks if not c.startswith(SECTION)]
    analysis = ours[0].find(ANALYSIS) if ours else -1
    if analysis >= 0:
        text += "\n" + ours[0][analysis:].rstrip("\n") + "\n"
    RESULTS.write_text("".join(kept).rstrip("\n") + "\n\n" + text)


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-size", default="40M", help="large files (default 40M)")
    parser.add_argument("--small-file-size", default="8M",
                        help="large files of the second stream, for RSS flatness (default 8M)")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=360.0,
                        help="seconds after which no run waits for a quiet machine or is "
                        "redone (default 360; the whole run stays under 10 min)")
    parser.add_argument("--profile", action="store_true",
                        help="run the cProfile pass even when every target is met")
    parser.add_argument("--no-results", action="store_true",
                        help="print only; leave bench/RESULTS.md alone")
    return parser.parse_args()


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if match is None:
        raise BenchError(f"{text!r} is not a size such as 40M")
    return int(match[1]) << {"": 0, "K": 10, "M": 20, "G": 30}[match[2]]


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    # SIGTERM unwinds like Ctrl-C, so nginx is stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    venv_bin = Path(sys.executable).parent
    bootsync = find_program("bootsync", venv_bin / "bootsync", REPO / ".venv/bin/bootsync")
    sstream_dirs = [Path(os.environ["SSTREAM_BIN"])] if os.environ.get("SSTREAM_BIN") else []
    sstream = find_program("sstream-mirror", *(d / "sstream-mirror" for d in sstream_dirs),
                           REPO / ".venv-simplestreams/bin/sstream-mirror")
    find_program("curl")
    nginx = ensure_nginx()
    work: Path = args.work.resolve()
    shutil.rmtree(work / "logs", ignore_errors=True)  # this run's logs only
    (work / "logs").mkdir(parents=True)

    large = make_stream(bootsync, work, args.file_size, parse_size(args.file_size))
    small = make_stream(bootsync, work, args.small_file_size, parse_size(args.small_file_size))
    if large.total < 1 << 30 or len(large.files) < 40:
        print("warning: the large stream is under 1 GiB or 40 files; targets are for ≥ 1 GiB")
    tools = make_tools(bootsync, sstream, work)
    profile = None
    # nginx serves work/streams only: work/xdg holds the mirror's secret signing key.
    with (nginx_serving(nginx, work / "streams", work / "nginx") as base,
          agent_stopped(work / "xdg")):
        large_url, small_url = f"{base}{large.root.name}/", f"{base}{small.root.name}/"
        warm_cache(large_url, large, work)
        warm_cache(small_url, small, work)
        for tool in tools:  # unmeasured: makes the signing key, fails fast on a broken tool
            run_once(tool, small, small_url, work, f"{_slug(tool.name)}-warmup")
        pacer = Pacer(args.budget)
        small_rows = run_rows([t for t in tools if t.is_bootsync], small, small_url, work,
                              repeat=args.repeat, pacer=pacer)
        large_rows = run_rows(tools, large, large_url, work, repeat=args.repeat, pacer=pacer)
        rows = large_rows + small_rows
        found = verdicts(large_rows, small_rows)
        if args.profile or not all(v.ok for v in found):
            # asyncio: its socket reads and loop overhead are Python calls cProfile sees.
            profile = profile_bootsync(large, large_url, work, "asyncio")
    advice = recommend(large_rows)
    print()
    print(table(rows))
    print()
    print(phase_table(rows))
    print()
    for verdict in found:
        print(verdict.line())
    print(advice)
    if profile is not None:
        print()
        print(profile)
    if not args.no_results:
        about = f"{machine()}, load average {load} at the start; {versions(nginx, sstream)}"
        write_results(section(args, rows, found, advice=advice, about=about, profile=profile))
        print(f"\nwrote section {SECTION!r} of {RESULTS}")
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"mirror_bench: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("mirror_bench: interrupted", file=sys.stderr)
        sys.exit(130)
