"""Benchmark: the rack's TFTP server against tftpd-hpa (``in.tftpd``), same client.

Servers (both on a free UDP port of 127.0.0.1, serving the same snapshot directory):

* the rack's: rack/tftp/server.py in a process of its own (this script with
  ``--serve-rack``), with the daemon's TFTP settings (blksize ≤ 1468, windowsize
  ≤ 64, 256 sessions) on the daemon's event loop (``RACK_LOOP`` of rack/main.py,
  asyncio; ``BOOTSYNC_EVENT_LOOP`` switches it as for the daemon), which takes the
  requests; each transfer's data phase runs in a worker thread of the server. With
  ``--uvloop`` the same server on uvloop is measured too (for information).
* tftpd-hpa: ``in.tftpd -L -s <snapshot> -a 127.0.0.1:<port>`` in the foreground
  (``-u nobody`` when root: it then drops to that user). It has no windowsize
  (RFC 7440): it ignores the option and sends lock-step.

Client: atftp (C; ``--option "windowsize N"`` is RFC 7440), for both servers.
Every transfer's file is compared with the original (size and SHA-256).

1. One 64 MiB file, blksize 1468: rack against tftpd-hpa (target ≥ 1.0×).
2. The same with windowsize 16, against tftpd-hpa at blksize 1468 (target ≥ 3×).
3. 100 clients at once (``--clients``), each fetching a smaller file (``--many-size``,
   default 2 MiB) with blksize 1468 and windowsize 16: all complete and identical;
   aggregate throughput (all bytes / first start → last exit) of both servers;
   the rack server's retransmissions (its TftpStats, as on /metrics) must stay
   under 1 % of the DATA packets (no retransmission storm).

Rounds are interleaved (``--repeat``, default 3); medians and their ratios are
printed, and each round's ratio; server CPU is read from /proc (in.tftpd's children,
one per transfer, sampled every 5 ms while they run: see ``ChildCpu``); load averages
(``/proc/loadavg``) are recorded with each round because the machine may be shared.
When a target is missed the rack server runs one more lock-step transfer under
cProfile (the event loop's thread and the transfer's worker thread, merged) and its
top functions are recorded. Results go to the "TFTP (bench/tftp_bench.py)" section
of bench/RESULTS.md (``--no-results`` skips that).

Run: ``.venv/bin/python bench/tftp_bench.py [--repeat 3] [--clients 100] [--uvloop]``
(or ``make bench-tftp``). Needs atftp and in.tftpd (``make tftp-clients``). Work
files go to a /tmp/btftp* directory, removed at the end; every process started is
stopped by PID, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import json
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from _common import (
    MIB,
    BenchError,
    Verdict,
    children_of,
    load_average,
    machine,
    median,
    process_cpu_s,
    stop_process,
    utc_date,
    write_section,
)

TITLE = "## TFTP (bench/tftp_bench.py)"
BLKSIZE = 1468
WINDOW = 16
BIG = "big.bin"
SMALL = "small.bin"
RUN_TIMEOUT_S = 300.0
STORM_FRACTION = 0.01  # retransmitted DATA packets per DATA packet above this: a storm


# ---------------------------------------------------------------- the rack server process


def serve_rack(boot_resources: Path, port: int, profile: Path | None) -> None:
    """Run the rack's TFTP server until SIGTERM; then print its stats as JSON."""
    from common.ops.logging import configure_logging  # noqa: PLC0415 - server side only
    from common.ops.runtime import run  # noqa: PLC0415
    from rack.main import RACK_LOOP  # noqa: PLC0415
    from rack.tftp.server import TftpServer, TftpSettings  # noqa: PLC0415

    async def main() -> dict[str, object]:
        server = TftpServer(boot_resources, TftpSettings(host="127.0.0.1", port=port))
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()
        stats = server.stats
        return {
            "files": stats.files,
            "bytes": stats.bytes,
            "retransmits": stats.retransmits,
            "errors": stats.errors,
        }

    configure_logging(level="info", fmt="json")  # the daemon's default level
    profiler = cProfile.Profile() if profile else None
    workers: list[cProfile.Profile] = []
    if profiler is not None:
        profile_transfer_threads(workers)
        profiler.enable()
    stats = run(main(), default_loop=RACK_LOOP)
    if profiler is not None and profile is not None:
        profiler.disable()
        merged = pstats.Stats(profiler)
        for worker in workers:
            merged.add(worker)
        merged.dump_stats(profile)
    print("STATS " + json.dumps(stats), flush=True)


def profile_transfer_threads(profiles: list[cProfile.Profile]) -> None:
    """Profile each transfer's data phase in its worker thread too (a cProfile profiler
    sees only the thread that enabled it): one profiler per transfer, into ``profiles``."""
    from rack.tftp import server  # noqa: PLC0415 - server side only

    transfer = server._Transfer  # the bench looks inside on purpose
    send_all = transfer.send_all

    def profiled(self: server._Transfer, oack: bytes | None) -> None:
        profiler = cProfile.Profile()
        profiles.append(profiler)
        profiler.enable()
        try:
            send_all(self, oack)
        finally:
            profiler.disable()

    transfer.send_all = profiled  # type: ignore[method-assign]


# ---------------------------------------------------------------- servers from the bench


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def cpu_s(self) -> float:
        return process_cpu_s([self.proc.pid])

    def stats(self) -> dict[str, object]:
        """The rack server's stats (after it stopped), or {} for tftpd-hpa."""
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("STATS "):
                found: dict[str, object] = json.loads(line[6:])
                return found
        return {}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_answering(server: Server, timeout_s: float = 15.0) -> None:
    """Wait until the server answers a request for a missing file with an ERROR."""
    request = b"\x00\x01no-such-file\x00octet\x00"
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise BenchError(f"{server.name} exited: {server.log.read_text()[-800:]}")
            sock.sendto(request, ("127.0.0.1", server.port))
            try:
                data, _ = sock.recvfrom(1024)
            except TimeoutError:
                continue
            if data[:2] == b"\x00\x05":
                return
    raise BenchError(f"{server.name} did not answer on 127.0.0.1:{server.port}")


@contextmanager
def started(
    name: str, argv: list[str], port: int, work: Path, env: dict[str, str]
) -> Iterator[Server]:
    log = work / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    server = Server(name, port, proc, log)
    try:
        wait_answering(server)
        print(f"{name}: pid {proc.pid} on 127.0.0.1:{port}", flush=True)
        yield server
    finally:
        stop_process(proc)


def rack_server(
    name: str, boot_resources: Path, work: Path, *, loop: str | None, profile: Path | None = None
) -> AbstractContextManager[Server]:
    port = free_udp_port()
    argv = [sys.executable, __file__, "--serve-rack", str(boot_resources), str(port)]
    if profile is not None:
        argv += ["--profile-to", str(profile)]
    env = {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    if loop is not None:
        env["BOOTSYNC_EVENT_LOOP"] = loop
    return started(name, argv, port, work, env)


def hpa_server(snapshot: Path, work: Path) -> AbstractContextManager[Server]:
    in_tftpd = shutil.which("in.tftpd") or "/usr/sbin/in.tftpd"
    if not os.access(in_tftpd, os.X_OK):
        raise BenchError("in.tftpd not found: run `make tftp-clients` (package tftpd-hpa)")
    port = free_udp_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    argv = [in_tftpd, "-L", *user, "-s", str(snapshot), "-a", f"127.0.0.1:{port}"]
    return started("tftpd-hpa", argv, port, work, {})


# ---------------------------------------------------------------- clients


@dataclass(frozen=True)
class Fetch:
    seconds: float
    bytes: int
    server_cpu_s: float
    load: str
    windowsize_granted: bool


def atftp_argv(port: int, name: str, out: Path, window: int) -> list[str]:
    options = ["--option", f"blksize {BLKSIZE}"]
    if window > 1:
        options += ["--option", f"windowsize {window}"]
    return ["atftp", *options, "-g", "-r", name, "-l", str(out), "127.0.0.1", str(port)]


def check_copy(out: Path, expected: tuple[int, str], what: str) -> None:
    size, sha256 = expected
    got = out.stat().st_size if out.exists() else -1
    if got != size or hashlib.sha256(out.read_bytes()).hexdigest() != sha256:
        raise BenchError(f"{what}: the file arrived different ({got} of {size} bytes)")
    out.unlink()


class ChildCpu:
    """CPU seconds used by the children of a forking server while a block runs: in.tftpd
    forks one per transfer and does not add them to its own counters (it does not wait
    for them), so each child's /proc stat is sampled every few milliseconds and its last
    sample counts (at most one interval of a child's last CPU is missed)."""

    INTERVAL_S = 0.005

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[int, float] = {}  # child pid -> CPU seconds at its last sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ChildCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            for child in children_of(self.pid)[1:]:
                used = process_cpu_s([child])
                if used > 0:
                    self.seen[child] = used

    def total(self) -> float:
        return sum(self.seen.values())


def fetch_one(
    server: Server, name: str, expected: tuple[int, str], work: Path, window: int
) -> Fetch:
    out = work / f"out-{server.name}.bin"
    cpu_before = server.cpu_s()
    started_at = time.monotonic()
    with ChildCpu(server.proc.pid) as children:
        done = subprocess.run(
            atftp_argv(server.port, name, out, window),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    seconds = time.monotonic() - started_at
    if done.returncode != 0:
        raise BenchError(f"atftp from {server.name} exited {done.returncode}: {done.stderr}")
    check_copy(out, expected, f"{server.name} {name}")
    granted = f"windowsize = {window}" in done.stdout + done.stderr
    cpu = server.cpu_s() - cpu_before + children.total()
    return Fetch(seconds, expected[0], cpu, load_average(), granted)


@dataclass(frozen=True)
class Crowd:
    seconds: float
    bytes: int
    failed: int
    load: str


def fetch_many(
    server: Server, expected: tuple[int, str], work: Path, clients: int, window: int
) -> Crowd:
    """``clients`` atftp processes at once; wall time from the first start to the last exit."""
    outs = [work / f"many-{server.name}-{n}.bin" for n in range(clients)]
    started_at = time.monotonic()
    procs = [
        subprocess.Popen(
            atftp_argv(server.port, SMALL, out, window),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for out in outs
    ]
    failed = 0
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, RUN_TIMEOUT_S - (time.monotonic() - started_at)))
    finally:
        for proc in procs:
            stop_process(proc, timeout_s=1)
    seconds = time.monotonic() - started_at
    for proc, out in zip(procs, outs, strict=True):
        try:
            check_copy(out, expected, f"{server.name} crowd")
        except BenchError:
            proc.returncode = proc.returncode or 1
        if proc.returncode != 0:
            failed += 1
            out.unlink(missing_ok=True)
    return Crowd(seconds, expected[0] * (clients - failed), failed, load_average())


# ---------------------------------------------------------------- the benchmark


def make_files(work: Path, big: int, small: int) -> tuple[Path, Path, dict[str, tuple[int, str]]]:
    """boot-resources/current → snapshots/bench holding BIG and SMALL (random bytes)."""
    boot = work / "boot-resources"
    snapshot = boot / "snapshots" / "bench"
    snapshot.mkdir(parents=True)
    (boot / "current").symlink_to(Path("snapshots") / "bench")
    expected = {}
    for name, size in ((BIG, big), (SMALL, small)):
        data = os.urandom(size)
        (snapshot / name).write_bytes(data)
        (snapshot / name).chmod(0o644)
        expected[name] = (size, hashlib.sha256(data).hexdigest())
    for path in (work, boot, boot / "snapshots", snapshot):
        path.chmod(0o755)  # in.tftpd reads as nobody
    return boot, snapshot, expected


def blocks_of(size: int) -> int:
    """DATA packets of a ``size``-byte file at blksize 1468 (the last one short)."""
    return size // BLKSIZE + 1


def mib_s(nbytes: int, seconds: float) -> float:
    return nbytes / MIB / seconds


def profile_lockstep(boot: Path, work: Path, expected: tuple[int, str]) -> str:
    """One lock-step transfer from the rack server under cProfile: its top functions."""
    prof = work / "rack.prof"
    with rack_server("rack-profiled", boot, work, loop=None, profile=prof) as server:
        fetched = fetch_one(server, BIG, expected, work, 1)
        stop_process(server.proc)
    text = io.StringIO()
    stats = pstats.Stats(str(prof), stream=text)
    stats.sort_stats("tottime").print_stats(14)
    lines = [
        line
        for line in text.getvalue().splitlines()
        if line.strip() and not line.startswith(("   Ordered", "   List reduced"))
    ]
    return (
        f"lock-step {mib_s(fetched.bytes, fetched.seconds):.1f} MiB/s under cProfile; "
        "top functions by own time:\n\n```\n" + "\n".join(lines[-16:]) + "\n```\n"
    )


def bench(args: argparse.Namespace) -> str:
    work = Path(tempfile.mkdtemp(prefix="btftp", dir="/tmp"))
    try:
        return run_bench(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_bench(args: argparse.Namespace, work: Path) -> str:
    if shutil.which("atftp") is None:
        raise BenchError("atftp not found: run `make tftp-clients`")
    boot, snapshot, expected = make_files(work, args.size * MIB, int(args.many_size * MIB))
    loads = [f"start {load_average()}"]
    single: dict[str, list[Fetch]] = {}
    crowds: dict[str, list[Crowd]] = {}
    rack_stats: dict[str, object] = {}
    with (
        hpa_server(snapshot, work) as hpa,
        rack_server("rack", boot, work, loop=None) as rack,
        (
            rack_server("rack-uvloop", boot, work, loop="uvloop") if args.uvloop else _no_server()
        ) as rack_uv,
    ):
        cases = [
            ("tftpd-hpa, blksize 1468", hpa, 1),
            ("rack, blksize 1468", rack, 1),
            ("rack, blksize 1468 + windowsize 16", rack, WINDOW),
        ]
        if rack_uv is not None:
            cases += [
                ("rack on uvloop, blksize 1468", rack_uv, 1),
                ("rack on uvloop, blksize 1468 + windowsize 16", rack_uv, WINDOW),
            ]
        for n in range(args.repeat):
            order = cases if n % 2 == 0 else cases[::-1]
            for label, server, window in order:
                got = fetch_one(server, BIG, expected[BIG], work, window)
                if window > 1 and not got.windowsize_granted:
                    raise BenchError(f"{label}: atftp did not report windowsize {window}")
                single.setdefault(label, []).append(got)
                print(
                    f"round {n + 1} {label}: {mib_s(got.bytes, got.seconds):.1f} MiB/s "
                    f"({got.seconds:.2f} s, server CPU {got.server_cpu_s:.2f} s, load {got.load})",
                    flush=True,
                )
            for label, server in (("tftpd-hpa", hpa), ("rack", rack))[:: 1 if n % 2 else -1]:
                crowd = fetch_many(server, expected[SMALL], work, args.clients, WINDOW)
                crowds.setdefault(label, []).append(crowd)
                print(
                    f"round {n + 1} {args.clients} clients, {label}: "
                    f"{mib_s(crowd.bytes, crowd.seconds):.1f} MiB/s aggregate "
                    f"({crowd.seconds:.2f} s, {crowd.failed} failed, load {crowd.load})",
                    flush=True,
                )
            loads.append(f"round {n + 1} {load_average()}")
        stop_process(rack.proc)
        rack_stats = rack.stats()
    profile = ""

    def rate(label: str) -> float:
        return median(mib_s(f.bytes, f.seconds) for f in single[label])

    def crowd_rate(label: str) -> float:
        return median(mib_s(c.bytes, c.seconds) for c in crowds[label])

    hpa_rate = rate("tftpd-hpa, blksize 1468")

    def round_ratios(label: str) -> str:
        """rack / tftpd-hpa of each round (the two measured seconds apart)."""
        pairs = zip(single[label], single["tftpd-hpa, blksize 1468"], strict=True)
        return ", ".join(f"{hpa.seconds / rack.seconds:.2f}×" for rack, hpa in pairs)

    lock = rate("rack, blksize 1468")
    windowed = rate("rack, blksize 1468 + windowsize 16")
    failed = sum(c.failed for cs in crowds.values() for c in cs)
    rack_failed = sum(c.failed for c in crowds["rack"])
    blocks_sent = sum(
        (size // BLKSIZE + 1) * count
        for size, count in (
            (expected[BIG][0], len(single["rack, blksize 1468"]) * 2),
            (expected[SMALL][0], args.clients * args.repeat),
        )
    )
    retransmits = int(str(rack_stats.get("retransmits", -1)))
    verdicts = [
        Verdict(
            "one client, blksize 1468: rack / tftpd-hpa",
            f"{lock / hpa_rate:.2f}× ({lock:.1f} vs {hpa_rate:.1f} MiB/s)",
            "≥ 1.0×",
            lock >= hpa_rate,
        ),
        Verdict(
            "one client, windowsize 16: rack / tftpd-hpa lock-step",
            f"{windowed / hpa_rate:.2f}× ({windowed:.1f} vs {hpa_rate:.1f} MiB/s)",
            "≥ 3.0×",
            windowed >= 3 * hpa_rate,
        ),
        Verdict(
            f"{args.clients} clients at once: all complete, byte-identical",
            f"{rack_failed} of {args.clients * args.repeat} rack transfers failed",
            "0",
            rack_failed == 0,
        ),
        Verdict(
            "no retransmission storm (rack server's count)",
            f"{retransmits} packets sent again of ~{blocks_sent} DATA packets",
            f"≤ {STORM_FRACTION:.0%}",
            0 <= retransmits <= STORM_FRACTION * blocks_sent,
        ),
    ]
    if args.profile or not all(v.ok for v in verdicts[:2]):
        profile = profile_lockstep(boot, work, expected[BIG])
    rows = [
        f"| {label} | {rate(label):.1f} | {median(f.seconds for f in fs):.2f} | "
        + f"{median(f.server_cpu_s for f in fs):.2f} | "
        + f"{median(f.server_cpu_s for f in fs) / blocks_of(args.size * MIB) * 1e6:.0f} |"
        for label, fs in single.items()
    ]
    crowd_rows = [
        f"| {label} | {crowd_rate(label):.1f} | {median(c.seconds for c in cs):.2f} | "
        f"{sum(c.failed for c in cs)} |"
        for label, cs in crowds.items()
    ]
    text = (
        f"{TITLE}\n\n"
        f"Date: {utc_date()}. Machine: {machine()} (shared with other engineers: figures "
        f"are noisy). Load averages: {'; '.join(loads)}.\n\n"
        f"Client atftp ({_atftp_version()}) for both servers, blksize {BLKSIZE}; tftpd-hpa "
        f"= `in.tftpd -L{' -u nobody' if os.geteuid() == 0 else ''} -s` (no windowsize); "
        "the rack server = rack/tftp/server.py in its own process with the daemon's "
        f"settings, on {os.environ.get('BOOTSYNC_EVENT_LOOP', 'asyncio')} (requests and "
        "options on the event loop, each transfer's data phase in a worker thread). "
        f"{args.repeat} interleaved rounds, medians; every file checked (SHA-256).\n\n"
        f"One client, {args.size} MiB file:\n\n"
        "| server, options | MiB/s | seconds | server CPU s | server CPU µs per block |\n"
        "|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\nRatios to tftpd-hpa round by round: lock-step "
        + round_ratios("rack, blksize 1468")
        + "; windowsize 16 "
        + round_ratios("rack, blksize 1468 + windowsize 16")
        + "."
        + f"\n\n{args.clients} clients at once, {args.many_size:g} MiB each, "
        f"windowsize {WINDOW} asked (tftpd-hpa ignores it):\n\n"
        "| server | aggregate MiB/s | seconds | failed |\n|---|---|---|---|\n"
        + "\n".join(crowd_rows)
        + f"\n\nRack server totals: {json.dumps(rack_stats)}; all failed transfers: {failed}.\n\n"
        + "\n".join(f"- {v.line()}" for v in verdicts)
        + "\n"
        + (f"\nProfile (rack server, lock-step): {profile}" if profile else "")
    )
    return text


@contextmanager
def _no_server() -> Iterator[None]:
    yield None


def _atftp_version() -> str:
    done = subprocess.run(["atftp", "--version"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="MiB of the single-client file")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--many-size", type=float, default=2.0, help="MiB per crowd client")
    parser.add_argument("--uvloop", action="store_true", help="also the rack server on uvloop")
    parser.add_argument("--profile", action="store_true", help="profile even when targets met")
    parser.add_argument("--no-results", action="store_true")
    parser.add_argument("--serve-rack", nargs=2, metavar=("BOOT_RESOURCES", "PORT"))
    parser.add_argument("--profile-to", type=Path)
    args = parser.parse_args(argv)
    if args.serve_rack:
        serve_rack(Path(args.serve_rack[0]), int(args.serve_rack[1]), args.profile_to)
        return 0
    try:
        text = bench(args)
    except BenchError as exc:
        print(f"tftp_bench: {exc}", file=sys.stderr)
        return 1
    print("\n" + text)
    if not args.no_results:
        write_section(TITLE, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
