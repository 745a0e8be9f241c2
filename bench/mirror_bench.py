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
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from _common import (
    DISTURBED_CORES,
    MIB,
    QUIET_WAIT_S,
    REPO,
    RESULTS,
    BenchError,
    Pacer,
    Stream,
    Verdict,
    ensure_nginx,
    find_program,
    find_sstream_mirror,
    machine,
    make_stream,
    measure,
    nginx_serving,
    parse_size,
    slug,
    versions,
    write_section,
)

SECTION = "## bootsync mirror vs curl and sstream-mirror"
CONCURRENCY = 8
TARGET_SPEEDUP = 2.0
TARGET_CURL_FRACTION = 0.65
TARGET_RSS_MIB = 80.0
# Peak RSS counts as flat when the large-file run is within this of the small-file run.
FLAT_SLACK_MIB = 8.0
LOOPS = ("uvloop", "asyncio")
# A run during which the rest of the machine (nginx included) used more than
# DISTURBED_CORES on average is measured again, at most REDO_DISTURBED times.
REDO_DISTURBED = 2


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


@contextmanager
def agent_stopped(xdg: Path) -> Iterator[None]:
    """Stop the gpg-agent that ``bootsync mirror`` leaves running in its key's home."""
    try:
        yield
    finally:
        home = xdg / "bootsync" / "mirror-signing-key"
        if home.is_dir():
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                check=False,
                capture_output=True,
            )


# ---------------------------------------------------------------- measuring


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
    return {
        "startup+exit": seconds - inside,
        "metadata": first - begin,
        "download": last - first,
        "publish": end - last,
    }


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
    return Sample(
        seconds=got.seconds,
        rss_kib=got.rss_kib,
        rss_floor_kib=got.rss_floor_kib,
        cpu_s=got.cpu_s,
        other_cpu_s=got.other_cpu_s,
        phases=phases,
    )


def warm_cache(url: str, stream: Stream, work: Path) -> None:
    """One curl pass to /dev/null: nginx and the page cache see every file once."""
    listing = work / "warm.txt"
    listing.write_text("".join(f"/dev/null {url}{p}\n" for p in stream.files))
    measure(
        ["xargs", "-a", str(listing), "-P", str(CONCURRENCY), "-n", "2", "curl", "-sf", "-o"],
        {},
        work / "logs" / "warm.log",
    )


def make_tools(bootsync: Path, sstream: Path, work: Path) -> list[Tool]:
    gnupg = work / "gnupg-empty"  # sstream-mirror's GNUPGHOME: trusts only --keyring
    xdg = {"XDG_DATA_HOME": str(work / "xdg")}  # the mirror's own signing key lives here

    def bootsync_cmd(url: str, out: Path, stream: Stream) -> list[str]:
        return [
            str(bootsync),
            "--log-format",
            "json",
            "mirror",
            url,
            str(out),
            "--keyring",
            str(stream.keyring),
            "--max",
            "2",
            "--concurrency",
            str(CONCURRENCY),
            "--no-progress",
        ]

    def curl_cmd(url: str, out: Path, stream: Stream) -> list[str]:
        listing = work / "curl-list.txt"
        listing.write_text("".join(f"{out / p} {url}{p}\n" for p in stream.files))
        return [
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
        ]

    def sstream_cmd(url: str, out: Path, stream: Stream) -> list[str]:
        shutil.rmtree(gnupg, ignore_errors=True)  # empty again for every run
        gnupg.mkdir(mode=0o700)
        return [str(sstream), "--keyring", str(stream.keyring), url, str(out)]

    return [
        *(
            Tool(
                f"bootsync ({loop})",
                bootsync_cmd,
                {**xdg, "BOOTSYNC_EVENT_LOOP": loop},
                is_bootsync=True,
            )
            for loop in LOOPS
        ),
        Tool(f"xargs -P {CONCURRENCY} curl", curl_cmd, {}),
        Tool("sstream-mirror", sstream_cmd, {"GNUPGHOME": str(gnupg)}),
    ]


def run_rows(
    tools: list[Tool], stream: Stream, url: str, work: Path, *, repeat: int, pacer: Pacer
) -> list[Row]:
    """Measure every tool ``repeat`` times, interleaved; disturbed runs are redone."""
    rows = [Row(tool, stream, []) for tool in tools]
    for rep in range(repeat):
        for row in rows:
            for attempt in range(1 + REDO_DISTURBED):
                pacer.settle()
                sample = run_once(
                    row.tool,
                    stream,
                    url,
                    work,
                    f"{slug(row.tool.name)}-{stream.root.name}-{rep}-{attempt}",
                )
                disturbed = sample.other_cpu_s > DISTURBED_CORES * sample.seconds
                print(
                    f"  {row.tool.name:<22} {stream.root.name:<12} run {rep + 1}: "
                    f"{sample.seconds:6.2f} s  {sample.rss_kib / 1024:6.1f} MiB  "
                    f"CPU {sample.cpu_s:5.2f} s  other CPU {sample.other_cpu_s:5.2f} s"
                    f"{'  disturbed' if disturbed else ''}",
                    flush=True,
                )
                if not disturbed or not pacer.in_budget():
                    break
                row.redone += 1
            row.samples.append(sample)
    return rows


def profile_bootsync(stream: Stream, url: str, work: Path, loop: str) -> str:
    """Run bootsync once under cProfile (event-loop thread only); the top functions."""
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    stats_file = work / "bootsync.pstats"
    argv = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(stats_file),
        "-m",
        "common.cli",
        "--log-format",
        "json",
        "mirror",
        url,
        str(out),
        "--keyring",
        str(stream.keyring),
        "--max",
        "2",
        "--concurrency",
        str(CONCURRENCY),
        "--no-progress",
    ]
    env = {"XDG_DATA_HOME": str(work / "xdg"), "BOOTSYNC_EVENT_LOOP": loop}
    seconds = measure(argv, env, work / "logs" / "profile.log").seconds
    shutil.rmtree(out, ignore_errors=True)
    text = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(18)
    body = text.getvalue()
    body = body[body.find("   ncalls") :].rstrip()
    # asyncio's loop thread is idle only inside epoll.poll; the rest of the run it is busy.
    idle = sum(
        entry[2]
        for func, entry in stats.stats.items()  # type: ignore[attr-defined]
        if func[2] == "<method 'poll' of 'select.epoll' objects>"
    )
    return (
        f"cProfile, {loop} loop, {seconds:.2f} s under the profiler; the event-loop "
        f"thread waited in epoll {idle:.2f} s, so it was busy for the rest. "
        f"Top by tottime:\n\n{body}"
    )


# ---------------------------------------------------------------- reporting


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
            Verdict(
                f"{loop}: speed-up over sstream-mirror",
                f"{speedup:.2f}×",
                f"≥ {TARGET_SPEEDUP:.1f}×",
                speedup >= TARGET_SPEEDUP,
            ),
            Verdict(
                f"{loop}: throughput vs curl",
                f"{fraction:.2f}×",
                f"≥ {TARGET_CURL_FRACTION:.2f}×",
                fraction >= TARGET_CURL_FRACTION,
            ),
            Verdict(
                f"{loop}: peak RSS",
                f"{boot.rss_mib:.1f} MiB",
                f"≤ {TARGET_RSS_MIB:.0f} MiB",
                boot.rss_mib <= TARGET_RSS_MIB,
            ),
            Verdict(
                f"{loop}: RSS flat with file size",
                f"{small_by[boot.tool.name].rss_mib:.1f} MiB at "
                f"{_size(small[0].stream.file_size)} → {boot.rss_mib:.1f} MiB at "
                f"{_size(boot.stream.file_size)} ({grown:+.1f} MiB)",
                f"growth ≤ {FLAT_SLACK_MIB:.0f} MiB",
                grown <= FLAT_SLACK_MIB,
            ),
        ]
    return found


def _size(nbytes: int) -> str:
    return f"{nbytes / MIB:g} MiB"


def table(rows: list[Row]) -> str:
    lines = [
        "| tool | stream | median s | best s | MiB/s | peak RSS MiB | CPU s | other CPU s "
        "| runs (s) | redone |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        runs = ", ".join(f"{s.seconds:.2f}" for s in row.samples)
        lines.append(
            f"| {row.tool.name} | {len(row.stream.files)} files, "
            f"{row.stream.total / MIB:.0f} MiB | {row.seconds:.2f} | {row.best_s:.2f} | "
            f"{row.mib_s:.0f} | {row.rss_text} | {row.cpu_s:.2f} | "
            f"{row.other_cpu_s:.2f} | {runs} | {row.redone} |"
        )
    return "\n".join(lines)


def phase_table(rows: list[Row]) -> str:
    names = ("startup+exit", "metadata", "download", "publish")
    lines = ["| bootsync run | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
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
    rows = {loop: next(r for r in large if r.tool.name == f"bootsync ({loop})") for loop in LOOPS}
    fast = min(LOOPS, key=lambda loop: rows[loop].seconds)
    slow = max(LOOPS, key=lambda loop: rows[loop].seconds)
    gap = rows[slow].seconds / rows[fast].seconds - 1
    best_agrees = rows[fast].best_s <= rows[slow].best_s
    lean = min(LOOPS, key=lambda loop: rows[loop].rss_mib)
    rss_gap = max(r.rss_mib for r in rows.values()) - rows[lean].rss_mib
    facts = "; ".join(
        f"{loop}: median {r.seconds:.2f} s, best {r.best_s:.2f} s, peak RSS {r.rss_mib:.1f} MiB"
        for loop, r in rows.items()
    )
    if gap >= 0.05 and best_agrees:
        choice, why = fast, f"{fast} is {gap:.0%} faster (median, and in the best runs)"
    elif rss_gap >= 5:
        choice = lean
        why = (
            f"speed is within noise ({gap:.0%} apart, best runs "
            f"{'agree' if best_agrees else 'disagree'}) and {lean} needs "
            f"{rss_gap:.0f} MiB less memory"
        )
    else:
        choice, why = current, "no measurable difference in speed or memory"
    verdict = (
        f'keep `MIRROR_LOOP = "{current}"`'
        if choice == current
        else f'switch `MIRROR_LOOP` from "{current}" to "{choice}"'
    )
    return f"Event loop ({facts}): {why}; {verdict}."


def section(
    args: argparse.Namespace,
    rows: list[Row],
    found: list[Verdict],
    *,
    advice: str,
    about: str,
    profile: str | None,
) -> str:
    date = subprocess.run(["date", "-u"], capture_output=True, text=True, check=True).stdout
    parts = [
        SECTION,
        "",
        f"Run {date.strip()} with `.venv/bin/python bench/mirror_bench.py --file-size "
        f"{args.file_size} --small-file-size {args.small_file_size} --repeat {args.repeat}`.",
        f"Machine: {about}.",
        "",
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
        'never reads below this script\'s own peak; "≤" marks a figure at that floor, an '
        "upper bound only.",
        "",
        table(rows),
        "",
        "Where bootsync's wall time goes (median s, from its log events: startup+exit is "
        "interpreter start, imports and keyring load before `mirror_started` plus teardown "
        "after `mirror_finished`; metadata is index and products fetch, gpg verify, parse, "
        "plan; publish is hard links, signing, state and gc):",
        "",
        phase_table(rows),
        "",
        *(f"- {v.line()}" for v in found),
        "",
        advice,
    ]
    if profile is not None:
        parts += [
            "",
            "A target was missed, so bootsync ran once more under cProfile "
            "(the event-loop thread only; hashing and writes run in worker threads "
            "and appear as waits):",
            "",
            "```",
            profile,
            "```",
        ]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-size", default="40M", help="large files (default 40M)")
    parser.add_argument(
        "--small-file-size",
        default="8M",
        help="large files of the second stream, for RSS flatness (default 8M)",
    )
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--budget",
        type=float,
        default=360.0,
        help="seconds after which no run waits for a quiet machine or is "
        "redone (default 360; the whole run stays under 10 min)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="run the cProfile pass even when every target is met"
    )
    parser.add_argument(
        "--no-results", action="store_true", help="print only; leave bench/RESULTS.md alone"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    # SIGTERM unwinds like Ctrl-C, so nginx is stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    venv_bin = Path(sys.executable).parent
    bootsync = find_program("bootsync", venv_bin / "bootsync", REPO / ".venv/bin/bootsync")
    sstream = find_sstream_mirror()
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
    with (
        nginx_serving(nginx, work / "streams", work / "nginx") as base,
        agent_stopped(work / "xdg"),
    ):
        large_url, small_url = f"{base}{large.root.name}/", f"{base}{small.root.name}/"
        warm_cache(large_url, large, work)
        warm_cache(small_url, small, work)
        for tool in tools:  # unmeasured: makes the signing key, fails fast on a broken tool
            run_once(tool, small, small_url, work, f"{slug(tool.name)}-warmup")
        pacer = Pacer(args.budget)
        small_rows = run_rows(
            [t for t in tools if t.is_bootsync],
            small,
            small_url,
            work,
            repeat=args.repeat,
            pacer=pacer,
        )
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
        write_section(
            SECTION, section(args, rows, found, advice=advice, about=about, profile=profile)
        )
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
