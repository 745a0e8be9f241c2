"""Benchmark: several regions on one PostgreSQL (real processes on 127.0.0.1).

Two ``bootsync-regiond`` processes (A and B) share a throwaway PostgreSQL
(tests/fakes/postgres.py); upstream is nginx serving a signed sample stream
(``--versions 1``, so the region imports all of it through a wildcard selection).

(a) Many racks, one region or two. A fresh cluster imports the small stream
    (``--rack-file-size``, 15 files of it plus small ones) into A, and B takes it
    from A (peer sync). Then, for each layout, ``--racks`` real ``bootsync-rackd``
    processes with fresh data directories pull it all: every rack registered with
    A ("one region"), or alternately with A and B ("two regions"). The regions are
    stopped (SIGSTOP) while the racks start and continued (SIGCONT) once every
    rack answers /livez, so the pulls start together. Aggregate throughput = all
    bytes / (first ``pull_started`` → last ``pull_finished``). CPU seconds of the
    regions, the racks and the whole machine over the same wall time are recorded:
    on a small machine the CPU, not the number of regions, is the bound. Layouts
    alternate for ``--repeat`` rounds; medians. Target: two regions ≥ 1.6× one.
(b) Peer sync against importing. Another fresh cluster: A imports the ≥ 1 GiB
    stream (``--file-size``) from nginx (``POST op=import`` → ``import_finished``);
    B, running meanwhile, hears ``import_finished`` and fetches every blob from A.
    Recorded: A's import time, and the time from A's ``import_finished`` to B
    publishing a stream with the images (``stream_published`` with products) —
    when B's racks could have them.

The machine may be shared: the load average is recorded before and after each
part, and the figures are noisy. Results go to the "Several regions" section of
bench/RESULTS.md (a hand-written ``### Analysis`` there is kept).

Run: ``.venv/bin/python bench/cluster_bench.py [--racks 20] [--repeat 2]
[--file-size 80M] [--rack-file-size 4M] [--no-results]`` (or ``make bench-cluster``).
Needs nginx (apt-get if missing) and PostgreSQL's initdb (``make postgresql-tools``).
Work files go to bench/work/cluster/, data to /tmp/bbc* (about 2.6 GiB for (b), and
racks × 62 MiB for (a) at the default sizes); every process started is stopped at
the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from _common import (
    MIB,
    REPO,
    BenchError,
    Stream,
    busy_cpu_s,
    ensure_nginx,
    free_port,
    load_average,
    machine,
    make_stream,
    nginx_serving,
    parse_size,
    process_cpu_s,
    utc_date,
    write_section,
)
from rack_bench import fetching_pull, rack_daemon
from region_bench import (
    Api,
    Daemon,
    Region,
    add_wildcard_source,
    bootsync_cli,
    kill_gpg_agents,
    short_dir,
    stamp,
    timed_import,
)

sys.path.insert(0, str(REPO))
from tests.fakes.postgres import PostgresServer

TITLE = "## Several regions (bench/cluster_bench.py)"
PULL_TIMEOUT_S = 600.0
PEER_TIMEOUT_S = 600.0
HEARTBEAT_S = 2
LEASE_S = 10


@dataclass
class Cluster:
    """Regions A and B on one PostgreSQL database; an admin key."""

    a: Region
    b: Region

    @property
    def pids(self) -> list[int]:
        return [self.a.daemon.pid, self.b.daemon.pid]


def region_config(path: Path, data_dir: Path, database: str, name: str, port: int) -> Path:
    """A regiond.toml on the shared database, no default source, short cluster timings.

    Every rack here connects from 127.0.0.1: the per-address connection limit is
    lifted (20 racks × 8 downloads would pass the default 64; real racks have an
    address each)."""
    path.write_text(
        "[server]\nmax_client_connections = 0\n"
        f'[storage]\ndata_dir = "{data_dir}"\n[database]\nurl = "{database}"\n'
        "[import]\ncreate_default_source = false\nconcurrency = 8\n"
        f'[cluster]\nname = "{name}"\nurl = "http://127.0.0.1:{port}"\n'
        f"heartbeat_seconds = {HEARTBEAT_S}\nlease_seconds = {LEASE_S}\n"
        '[log]\nformat = "json"\n'
    )
    return path


@contextmanager
def cluster_running(pg: PostgresServer, root: Path, work: Path, label: str) -> Iterator[Cluster]:
    """Regions A then B on a new database (A's start-up import, with no source, is empty)."""
    database = asyncio.run(pg.new_database())
    daemons: list[Daemon] = []
    regions = []
    try:
        for name in ("a", "b"):
            port = free_port()
            data = root / f"{label}-{name}"
            config = region_config(
                work / f"regiond-{label}-{name}.toml", data, database, f"region-{name}", port
            )
            daemon = Daemon(
                "region",
                ["--config", str(config), "--listen", f"127.0.0.1:{port}"],
                work / "logs" / f"{label}-region-{name}.log",
                port,
            )
            daemons.append(daemon)
            daemon.start("/healthz")
            if name == "a":
                daemon.wait_event("import_finished")
            regions.append((daemon, data, config))
        key = bootsync_cli("apikey", "--username", "admin", "--admin", "--config", str(config))
        a, b = (Region(d, data, Api(d.url, key)) for d, data, _config in regions)
        yield Cluster(a, b)
    finally:
        for daemon in daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                os.kill(daemon.pid, signal.SIGCONT)
            daemon.stop()
        kill_gpg_agents(root)


def wait_peer_published(b: Region, after: float, timeout_s: float = PEER_TIMEOUT_S) -> float:
    """When ``b`` published a stream with products after ``after`` (POSIX seconds)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in b.daemon.events("stream_published"):
            if stamp(event) >= after and event.get("products", 0) > 0:
                return stamp(event)
        time.sleep(0.1)
    raise BenchError(f"region B published nothing after {timeout_s:.0f} s:\n{b.daemon.log_tail()}")


# ---------------------------------------------------------------- (b) peer sync


@dataclass(frozen=True)
class PeerRun:
    bytes: int
    import_s: float
    import_cpu_s: float
    peer_s: float  # A's import_finished -> B's stream published
    peer_pass_s: float  # B's peer_sync_finished duration_s
    peer_cpu_a_s: float  # A serving the blobs
    peer_cpu_b_s: float  # B fetching, hashing, writing them
    load: tuple[str, str]


def peer_run(pg: PostgresServer, work: Path, upstream: str, stream: Stream) -> PeerRun:
    load0 = load_average()
    with short_dir("bbc") as root, cluster_running(pg, root, work, "peer") as cluster:
        add_wildcard_source(cluster.a, upstream, stream.keyring)
        imported = timed_import(cluster.a)
        finished = stamp(imported.summary)
        cpu0 = [process_cpu_s([p]) for p in cluster.pids]
        published = wait_peer_published(cluster.b, finished)
        cpu1 = [process_cpu_s([p]) for p in cluster.pids]
        passes = [
            e
            for e in cluster.b.daemon.events("peer_sync_finished")
            if stamp(e) >= finished - 1 and e["fetched"]
        ]
        return PeerRun(
            bytes=int(imported.summary["bytes"]),
            import_s=imported.seconds,
            import_cpu_s=imported.cpu_s,
            peer_s=published - finished,
            peer_pass_s=sum(float(e["duration_s"]) for e in passes),
            peer_cpu_a_s=cpu1[0] - cpu0[0],
            peer_cpu_b_s=cpu1[1] - cpu0[1],
            load=(load0, load_average()),
        )


# ---------------------------------------------------------------- (a) racks


@dataclass(frozen=True)
class SwarmRun:
    layout: str
    racks: int
    bytes: int
    window_s: float
    regions_cpu_s: float
    racks_cpu_s: float
    machine_busy_s: float
    wall_s: float
    load: tuple[str, str]

    @property
    def mib_s(self) -> float:
        return self.bytes / MIB / self.window_s

    @property
    def machine_cores(self) -> float:
        return self.machine_busy_s / self.wall_s


def swarm_run(cluster: Cluster, work: Path, layout: str, racks: int, secret: Path) -> SwarmRun:
    """``racks`` fresh racks pull everything at once from A (or alternately A and B)."""
    targets = [cluster.a] if layout == "one region" else [cluster.a, cluster.b]
    logs = work / "logs" / f"racks-{layout.replace(' ', '-')}-{time.time():.0f}"
    logs.mkdir(parents=True)
    load0 = load_average()
    with short_dir("bbc") as root:
        daemons = [
            rack_daemon(
                root,
                f"r{i:02d}",
                region_url=targets[i % len(targets)].daemon.url,
                secret_file=secret,
                logs=logs,
            )
            for i in range(racks)
        ]
        try:
            for pid in cluster.pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                for rack in daemons:
                    rack.launch()
                for rack in daemons:
                    rack.wait_ready("/livez", timeout_s=120)
            finally:
                for pid in cluster.pids:
                    os.kill(pid, signal.SIGCONT)
            t0, busy0 = time.time(), busy_cpu_s()
            regions0 = process_cpu_s(cluster.pids)
            racks0 = process_cpu_s(r.pid for r in daemons)
            pulls = [fetching_pull(r, timeout_s=PULL_TIMEOUT_S) for r in daemons]
            wall, busy = time.time() - t0, busy_cpu_s() - busy0
            regions_cpu = process_cpu_s(cluster.pids) - regions0
            racks_cpu = process_cpu_s(r.pid for r in daemons) - racks0
        finally:
            for rack in daemons:
                rack.terminate()
            for rack in daemons:
                rack.stop()
    return SwarmRun(
        layout=layout,
        racks=racks,
        bytes=sum(int(f["bytes"]) for _s, f in pulls),
        window_s=max(stamp(f) for _s, f in pulls) - min(stamp(s) for s, _f in pulls),
        regions_cpu_s=regions_cpu,
        racks_cpu_s=racks_cpu,
        machine_busy_s=busy,
        wall_s=wall,
        load=(load0, load_average()),
    )


def swarms(
    pg: PostgresServer, work: Path, upstream: str, stream: Stream, args: argparse.Namespace
) -> list[SwarmRun]:
    runs: list[SwarmRun] = []
    with short_dir("bbc") as root, cluster_running(pg, root, work, "racks") as cluster:
        add_wildcard_source(cluster.a, upstream, stream.keyring)
        imported = timed_import(cluster.a)
        wait_peer_published(cluster.b, stamp(imported.summary))
        secret = work / "rack-secret"
        secret.write_text(bootsync_cli("rack-secret", "--data-dir", str(cluster.a.data_dir)))
        for round_no in range(args.repeat):
            layouts = ["one region", "two regions"]
            for layout in layouts if round_no % 2 == 0 else layouts[::-1]:
                run = swarm_run(cluster, work, layout, args.racks, secret)
                print(
                    f"  {layout}: {run.bytes / MIB:.0f} MiB in {run.window_s:.2f} s = "
                    f"{run.mib_s:.0f} MiB/s; CPU regions {run.regions_cpu_s:.1f} s, racks "
                    f"{run.racks_cpu_s:.1f} s, machine {run.machine_cores:.2f} cores busy; "
                    f"load {run.load[0]} → {run.load[1]}",
                    flush=True,
                )
                runs.append(run)
    return runs


# ---------------------------------------------------------------- report


def swarm_table(runs: list[SwarmRun]) -> str:
    lines = [
        "| layout | racks | MiB pulled | window s | MiB/s | CPU s regions | CPU s racks "
        "| machine cores busy | load before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r.layout} | {r.racks} | {r.bytes / MIB:.0f} | {r.window_s:.2f} | {r.mib_s:.0f} "
        f"| {r.regions_cpu_s:.1f} | {r.racks_cpu_s:.1f} | {r.machine_cores:.2f} "
        f"| {r.load[0]} → {r.load[1]} |"
        for r in runs
    ]
    return "\n".join(lines)


def section(args: argparse.Namespace, runs: list[SwarmRun], peer: PeerRun) -> str:
    one = statistics.median(r.mib_s for r in runs if r.layout == "one region")
    two = statistics.median(r.mib_s for r in runs if r.layout == "two regions")
    ratio = two / one
    cores = os.cpu_count() or 1
    busy = statistics.median(r.machine_cores for r in runs)
    bound = (
        f"the machine's {cores} cores were {busy:.2f} busy on average during the pulls "
        "(racks hash and write what they fetch; the regions send it): the CPU, not the "
        "number of regions, bounds the aggregate"
        if busy >= 0.8 * cores
        else f"the machine averaged {busy:.2f} of {cores} cores busy during the pulls"
    )
    verdict = "met" if ratio >= 1.6 else "missed"
    return "\n".join(
        [
            TITLE,
            "",
            f"Run {utc_date()} with `.venv/bin/python bench/cluster_bench.py --racks "
            f"{args.racks} --repeat {args.repeat} --file-size {args.file_size} "
            f"--rack-file-size {args.rack_file_size}` on {machine()}. The machine is "
            "shared with other work: the load average (`uptime`) is recorded with each "
            "run and the figures are noisy.",
            "",
            f"### (a) {args.racks} racks pulling from one region or from two at once",
            "",
            swarm_table(runs),
            "",
            f"Median aggregate: one region {one:.0f} MiB/s, two regions {two:.0f} MiB/s: "
            f"**{ratio:.2f}×** (target ≥ 1.6× on a machine with the cores for it: {verdict} "
            f"here). Bound: {bound}.",
            "",
            "### (b) A second region holding a ≥ 1 GiB import (peer sync)",
            "",
            "| step | seconds | MiB/s | CPU s |",
            "|---|---:|---:|---:|",
            f"| A imports {peer.bytes / MIB:.0f} MiB from nginx (op=import → import_finished) "
            f"| {peer.import_s:.2f} | {peer.bytes / MIB / peer.import_s:.0f} "
            f"| {peer.import_cpu_s:.1f} (A) |",
            f"| B holds and publishes it (A's import_finished → B's stream_published) "
            f"| {peer.peer_s:.2f} | {peer.bytes / MIB / peer.peer_s:.0f} "
            f"| {peer.peer_cpu_b_s:.1f} (B), {peer.peer_cpu_a_s:.1f} (A serving) |",
            "",
            f"B's peer-sync passes took {peer.peer_pass_s:.2f} s of that; the second region "
            f"holds the import {peer.peer_s / peer.import_s:.2f}× the first region's own "
            f"import time after it. Load {peer.load[0]} → {peer.load[1]}.",
            "",
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--racks", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--file-size", default="80M", help="(b): 15 files of it, ≥ 1 GiB")
    parser.add_argument("--rack-file-size", default="4M", help="(a): 15 files of it per rack")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "cluster")
    parser.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    work = args.work.resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    bootsync = REPO / ".venv" / "bin" / "bootsync"
    nginx = ensure_nginx()
    with ExitStack() as stack:
        pg = PostgresServer()
        pg.start()
        stack.callback(pg.stop)
        small = make_stream(
            bootsync, work, args.rack_file_size, parse_size(args.rack_file_size), versions=1
        )
        big = make_stream(bootsync, work, args.file_size, parse_size(args.file_size), versions=1)
        print(f"(a) {args.racks} racks, one region vs two; load {load_average()}", flush=True)
        small_url = stack.enter_context(nginx_serving(nginx, small.root, work / "nginx-small"))
        runs = swarms(pg, work, small_url, small, args)
        print(f"(b) peer sync of a {big.total / MIB:.0f} MiB import; load {load_average()}")
        big_url = stack.enter_context(nginx_serving(nginx, big.root, work / "nginx-big"))
        peer = peer_run(pg, work, big_url, big)
        print(
            f"  A import {peer.import_s:.2f} s; B held it {peer.peer_s:.2f} s after "
            f"(passes {peer.peer_pass_s:.2f} s); load {peer.load[0]} → {peer.load[1]}",
            flush=True,
        )
    text = section(args, runs, peer)
    print(text)
    if not args.no_results:
        write_section(TITLE, text)
    shutil.rmtree(work / "logs", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
