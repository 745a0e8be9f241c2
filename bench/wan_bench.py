"""Benchmark: ``bootsync mirror`` against sstream-mirror from a WAN-shaped upstream.

A CDN or mirror typically caps each connection's rate. Here nginx on
127.0.0.1 serves a one-version stream (one large squashfs, ``--file-size``,
1 GiB by default, plus a 64 MiB initrd, a 16 MiB kernel and a manifest) with
``limit_rate`` per connection (``--rate``, 16m by default). A second variant
puts a small proxy (bench/_delay_proxy.py) in front that adds ``--delay-ms``
per connection and per request, like a WAN round trip.

Both tools copy the same version (``--max 1``) of the unsigned stream
(``index.json``: equal work, no gpg) into a fresh empty directory, interleaved,
sha256 checked by both; bootsync also fsyncs and signs its own metadata.
bootsync runs with ``--concurrency 8``, so its cap is 8 × rate; sstream-mirror
fetches one file at a time over one connection. Prints each run, the ratio
bootsync / sstream-mirror and the fraction of the aggregate cap
(connections × rate) bootsync reached, with ``uptime``'s load, and writes its
section of bench/RESULTS.md (keeping a hand-written ``### Analysis``).

Run: ``.venv/bin/python bench/wan_bench.py [--file-size 1G] [--rate 16m]
[--delay-ms 50] [--repeat 1]`` (or ``make bench-wan``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _common import (
    MIB,
    REPO,
    RESULTS,
    BenchError,
    Measured,
    Verdict,
    ensure_nginx,
    find_program,
    find_sstream_mirror,
    free_port,
    load_average,
    machine,
    measure,
    parse_size,
    stop_process,
    utc_date,
    versions,
    wait_listening,
    write_section,
)

SECTION = "## WAN-shaped upstream (bench/wan_bench.py)"
CONCURRENCY = 8
TARGET_SPEEDUP = 7.0
TARGET_CAP = 0.85
PRODUCT = "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04"
CONTENT = "com.ubuntu.maas:stable:v3:download"
# Item sizes besides the squashfs (--file-size).
EXTRA_SIZES = {"boot-initrd": 64 * MIB, "boot-kernel": 16 * MIB, "manifest": 64 << 10}
RUN_TIMEOUT_S = 900.0

NGINX_CONF = """\
{user}worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    limit_rate {rate};
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


@dataclass(frozen=True)
class WanStream:
    root: Path
    files: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.files.values())


@dataclass(frozen=True)
class Run:
    tool: str
    variant: str
    got: Measured
    load: str  # uptime's load averages before the run


# ---------------------------------------------------------------- setup


def _random_file(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MIB))
            hasher.update(block)
            out.write(block)
            left -= len(block)
    return hasher.hexdigest()


def make_wan_stream(bootsync: Path, work: Path, size_text: str, size: int) -> WanStream:
    """An unsigned one-version stream under ``work/streams/wan-<size>``, reused when present."""
    root = work / "streams" / f"wan-{size_text}"
    marker = root / ".bench-file-size"
    sizes = {"squashfs": size, **EXTRA_SIZES}
    if not (marker.is_file() and marker.read_text().strip() == str(size)):
        shutil.rmtree(root, ignore_errors=True)
        print(f"writing WAN stream {root} (squashfs {size_text})", flush=True)
        sample = work / "streams" / "wan-template"
        shutil.rmtree(sample, ignore_errors=True)
        subprocess.run(
            [
                str(bootsync),
                "--log-level",
                "warning",
                "sample-stream",
                str(sample),
                "--file-size",
                "64K",
                "--versions",
                "1",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        doc = json.loads((sample / f"streams/v1/{CONTENT}.json").read_bytes())
        index = json.loads((sample / "streams/v1/index.json").read_bytes())
        shutil.rmtree(sample)
        product = doc["products"][PRODUCT]
        for version in product["versions"].values():
            for name, item in version["items"].items():
                item["size"] = sizes[name]
                item["sha256"] = _random_file(root / item["path"], sizes[name])
        doc["products"] = {PRODUCT: product}
        index["index"] = {CONTENT: {**index["index"][CONTENT], "products": [PRODUCT]}}
        (root / "streams/v1").mkdir(parents=True, exist_ok=True)
        (root / f"streams/v1/{CONTENT}.json").write_text(json.dumps(doc, indent=1))
        (root / "streams/v1/index.json").write_text(json.dumps(index, indent=1))
        marker.write_text(f"{size}\n")
    doc = json.loads((root / f"streams/v1/{CONTENT}.json").read_bytes())
    files = {
        item["path"]: int(item["size"])
        for version in doc["products"][PRODUCT]["versions"].values()
        for item in version["items"].values()
    }
    return WanStream(root, files)


@contextmanager
def limited_nginx(nginx: Path, root: Path, prefix: Path, rate: str) -> Iterator[int]:
    """nginx serving ``root`` with ``limit_rate`` per connection; yields its port."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = f"user {pwd.getpwuid(0).pw_name};\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, prefix=prefix, port=port, root=root, rate=rate))
    with (prefix / "nginx.out").open("wb") as log:
        proc = subprocess.Popen(
            [str(nginx), "-p", str(prefix), "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_listening(port, proc, "nginx")
            yield port
        finally:
            stop_process(proc)


@contextmanager
def delay_proxy(upstream: int, delay_s: float) -> Iterator[int]:
    """bench/_delay_proxy.py in front of 127.0.0.1:``upstream``; yields its port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "bench/_delay_proxy.py"),
            "--port",
            str(port),
            "--upstream",
            str(upstream),
            "--delay",
            str(delay_s),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_listening(port, proc, "delay proxy")
        yield port
    finally:
        stop_process(proc)


@contextmanager
def agent_stopped(xdg: Path) -> Iterator[None]:
    """Stop the gpg-agent that ``bootsync mirror``'s signing key may leave running."""
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


# ---------------------------------------------------------------- running


def run_tool(tool: str, url: str, work: Path, label: str, exe: dict[str, Path]) -> Measured:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    out.mkdir(parents=True)
    index = f"{url}streams/v1/index.json"
    if tool == "bootsync":
        argv = [str(exe["bootsync"]), "--log-format", "json", "mirror", index, str(out)]
        argv += ["--no-verify", "--max", "1", "--concurrency", str(CONCURRENCY), "--no-progress"]
        env = {"XDG_DATA_HOME": str(work / "xdg")}
    else:
        gnupg = work / "gnupg-empty"
        shutil.rmtree(gnupg, ignore_errors=True)
        gnupg.mkdir(mode=0o700)
        argv = [str(exe["sstream"]), "--max", "1", index, str(out)]
        env = {"GNUPGHOME": str(gnupg)}
    got = measure(argv, env, work / "logs" / f"{label}.log", timeout_s=RUN_TIMEOUT_S)
    shutil.rmtree(out)
    return got


# ---------------------------------------------------------------- reporting


def _median(runs: list[Run], tool: str, variant: str) -> float:
    return statistics.median(r.got.seconds for r in runs if r.tool == tool and r.variant == variant)


def _cpu(runs: list[Run], tool: str, variant: str) -> float:
    return statistics.median(r.got.cpu_s for r in runs if r.tool == tool and r.variant == variant)


def report(
    runs: list[Run], stream: WanStream, variants: list[str], cap_mib_s: float
) -> tuple[str, list[Verdict]]:
    lines = [
        "| upstream | tool | median s | MiB/s | of cap | CPU s | runs (s) | load at start |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    found = []
    for variant in variants:
        for tool in ("bootsync", "sstream-mirror"):
            mine = [r for r in runs if r.tool == tool and r.variant == variant]
            seconds = _median(runs, tool, variant)
            rate = stream.total / MIB / seconds
            lines.append(
                f"| {variant} | {tool} | {seconds:.2f} | {rate:.1f} | {rate / cap_mib_s:.2f} | "
                f"{_cpu(runs, tool, variant):.2f} | "
                f"{', '.join(f'{r.got.seconds:.2f}' for r in mine)} | "
                f"{'; '.join(r.load for r in mine)} |"
            )
        ours = _median(runs, "bootsync", variant)
        speedup = _median(runs, "sstream-mirror", variant) / ours
        fraction = stream.total / MIB / ours / cap_mib_s
        found += [
            Verdict(
                f"{variant}: speed-up over sstream-mirror",
                f"{speedup:.2f}×",
                f"≥ {TARGET_SPEEDUP:.1f}×",
                speedup >= TARGET_SPEEDUP,
            ),
            Verdict(
                f"{variant}: fraction of the aggregate cap ({CONCURRENCY} × rate)",
                f"{fraction:.2f}",
                f"≥ {TARGET_CAP:.2f}",
                fraction >= TARGET_CAP,
            ),
        ]
    return "\n".join(lines), found


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-size", default="1G", help="the squashfs (default 1G)")
    parser.add_argument("--rate", default="16m", help="nginx limit_rate per connection")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="proxy delay (default 50)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work")
    parser.add_argument(
        "--no-results", action="store_true", help="print only; leave bench/RESULTS.md alone"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    venv_bin = Path(sys.executable).parent
    exe = {
        "bootsync": find_program("bootsync", venv_bin / "bootsync", REPO / ".venv/bin/bootsync"),
        "sstream": find_sstream_mirror(),
    }
    nginx = ensure_nginx()
    work: Path = (args.work / "wan").resolve()
    shutil.rmtree(work / "logs", ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    stream = make_wan_stream(
        exe["bootsync"], args.work.resolve(), args.file_size, parse_size(args.file_size)
    )
    rate_bytes = parse_size(args.rate)
    cap_mib_s = CONCURRENCY * rate_bytes / MIB
    print(
        f"stream {stream.root.name}: {len(stream.files)} files, {stream.total / MIB:.0f} MiB; "
        f"limit_rate {args.rate} per connection; cap {cap_mib_s:.0f} MiB/s",
        flush=True,
    )
    delayed = f"+{args.delay_ms:g} ms per request"
    variants = ["rate-limited", f"rate-limited, {delayed}"]
    runs: list[Run] = []
    with (
        agent_stopped(work / "xdg"),
        limited_nginx(nginx, stream.root.parent, work / "nginx", args.rate) as port,
    ):
        direct = f"http://127.0.0.1:{port}/{stream.root.name}/"
        run_tool("bootsync", direct, work, "warmup", exe)  # makes the signing key
        with delay_proxy(port, args.delay_ms / 1000) as proxy_port:
            via = f"http://127.0.0.1:{proxy_port}/{stream.root.name}/"
            for rep in range(args.repeat):
                for variant, url in zip(variants, (direct, via), strict=True):
                    tools = ["sstream-mirror", "bootsync"]
                    if rep % 2:
                        tools.reverse()
                    for tool in tools:
                        load = load_average()
                        got = run_tool(tool, url, work, f"{tool}-{rep}-{len(runs)}", exe)
                        runs.append(Run(tool, variant, got, load))
                        print(
                            f"  {variant:<36} {tool:<15} {got.seconds:7.2f} s  "
                            f"{stream.total / MIB / got.seconds:6.1f} MiB/s  CPU {got.cpu_s:.2f} s"
                            f"  (load {load})",
                            flush=True,
                        )
    table, found = report(runs, stream, variants, cap_mib_s)
    print()
    print(table)
    for verdict in found:
        print(verdict.line())
    if not args.no_results:
        text = "\n".join(
            [
                SECTION,
                "",
                f"Run {utc_date()} with `.venv/bin/python bench/wan_bench.py --file-size "
                f"{args.file_size} --rate {args.rate} --delay-ms {args.delay_ms:g} "
                f"--repeat {args.repeat}`.",
                f"Machine: {machine()}; {versions(nginx, exe['sstream'])}.",
                "",
                f"nginx on 127.0.0.1 with `limit_rate {args.rate}` per connection serves one "
                f"version ({len(stream.files)} files, {stream.total / MIB:.0f} MiB: squashfs "
                f"{args.file_size}, initrd 64 MiB, kernel 16 MiB, manifest) as an unsigned "
                "`index.json`; the second upstream adds a proxy delaying each connection and "
                f"each request by {args.delay_ms:g} ms. `bootsync mirror --no-verify --max 1 "
                f"--concurrency {CONCURRENCY}` (sha256, fsync, its own signed metadata) and "
                "`sstream-mirror --max 1` (sha256, one file at a time) run interleaved into "
                f"a fresh directory; the cap is {CONCURRENCY} connections × {args.rate}/s = "
                f"{cap_mib_s:.0f} MiB/s. Load is `uptime`'s 1/5/15-minute load before each "
                "run (the machine is shared).",
                "",
                table,
                "",
                *(f"- {v.line()}" for v in found),
                "",
            ]
        )
        write_section(SECTION, text)
        print(f"\nwrote section {SECTION!r} of {RESULTS}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"wan_bench: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("wan_bench: interrupted", file=sys.stderr)
        sys.exit(130)
