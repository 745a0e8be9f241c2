"""Start-up: `bootsync --help` against Canonical's `sstream-mirror --help`, and one API call.

The two run interleaved (one of each per round, the order alternating), so a
busy spell of a shared machine hits both alike. Prints each tool's median and
best wall time and the ratio of the medians. With ``--api`` it also starts a
real ``bootsync-regiond`` on 127.0.0.1 (empty data dir), logs a profile in and
times ``bootsync PROFILE boot-resources read`` end to end (process start to
exit; target ≤ 0.20 s), interleaved with ``curl`` of the same URL with the same
key (process start, one request, exit) and ``sstream-mirror --help`` (how busy
the shared machine was: 83 ms when quiet), printing the median's ratio to the
target. Usage:

    python bench/startup_bench.py [--runs N] [--api]

``bootsync`` is looked up on PATH (``make bench-startup`` puts the venv's first),
``sstream-mirror`` in ``$SSTREAM_BIN`` (default ``.venv-simplestreams/bin``).
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _tools() -> dict[str, list[str]]:
    bootsync = shutil.which("bootsync") or str(REPO / ".venv" / "bin" / "bootsync")
    sstream_bin = Path(os.environ.get("SSTREAM_BIN", REPO / ".venv-simplestreams" / "bin"))
    return {
        "bootsync --help": [bootsync, "--help"],
        "sstream-mirror --help": [str(sstream_bin / "sstream-mirror"), "--help"],
    }


def _once(argv: list[str], env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - began


API_TARGET_S = 0.20


def _profile_api(args: list[str], env: dict[str, str], work: Path) -> None:
    """One more call under ``-X importtime`` and one under cProfile: where the time goes."""
    python = str(REPO / ".venv" / "bin" / "python")
    done = subprocess.run(
        [python, "-X", "importtime", "-m", "common.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    print("\nimports by cumulative µs (top 15):")
    for micros, name in sorted(rows, reverse=True)[:15]:
        print(f"  {micros:>8} {name}")
    stats = work / "api.pstats"
    subprocess.run(
        [python, "-m", "cProfile", "-o", str(stats), "-m", "common.cli", *args],
        env=env,
        capture_output=True,
        check=True,
        cwd=REPO,
    )
    text = io.StringIO()
    pstats.Stats(str(stats), stream=text).sort_stats("cumulative").print_stats(25)
    print(text.getvalue()[text.getvalue().find("   ncalls") :])


def api_call(runs: int, *, profile: bool = False) -> None:
    """Time ``bootsync PROFILE boot-resources read`` against a local region."""
    sys.path.insert(0, str(REPO / "bench"))
    from region_bench import (  # noqa: PLC0415 - only for --api
        oauth_header,
        region_running,
        short_dir,
        write_region_config,
    )

    bootsync = shutil.which("bootsync") or str(REPO / ".venv" / "bin" / "bootsync")
    with short_dir("bs-api-") as work:
        config = write_region_config(work / "region.toml")
        with region_running(
            work / "data", config, work / "region.log", startup_import=False
        ) as region:
            env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config")}
            url = f"{region.daemon.url}/MAAS/"
            subprocess.run(
                [bootsync, "login", "bench", url, region.api.key],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            argv = [bootsync, "bench", "boot-resources", "read"]
            auth = oauth_header(region.api.key)["Authorization"]
            curl = ["curl", "-sf", "-o", "/dev/null", "-H", f"Authorization: {auth}"]
            curl.append(f"{region.daemon.url}/MAAS/api/2.0/boot-resources/")
            _once(argv, env)  # warm the page cache
            _once(curl, env)
            sstream = _tools()["sstream-mirror --help"]
            times: list[float] = []
            reference: list[float] = []
            busy: list[float] = []
            for round_ in range(runs):
                order = [(times, argv), (reference, curl), (busy, sstream)]
                shift = round_ % len(order)
                for out, command in order[shift:] + order[:shift]:
                    out.append(_once(command, env))
            if profile:
                _profile_api(argv[1:], env, work)
    mid = statistics.median(times)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(
        f"{'bootsync PROFILE boot-resources read':40} median {mid * 1000:6.1f} ms  "
        f"best {min(times) * 1000:6.1f} ms  ({runs} runs; load {load})"
    )
    print(
        f"{'curl of the same URL (reference)':40} median "
        f"{statistics.median(reference) * 1000:6.1f} ms  best {min(reference) * 1000:6.1f} ms"
    )
    print(
        f"{'sstream-mirror --help (same rounds)':40} median "
        f"{statistics.median(busy) * 1000:6.1f} ms  best {min(busy) * 1000:6.1f} ms"
    )
    print(
        f"ratio to the {API_TARGET_S * 1000:.0f} ms target: {mid / API_TARGET_S:.2f} "
        f"({'PASS' if mid <= API_TARGET_S else 'MISS'})"
    )


def main() -> int:
    """Time both tools over ``--runs`` interleaved rounds and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds (default 30)")
    parser.add_argument(
        "--api", action="store_true", help="also time one API call against a local region"
    )
    parser.add_argument(
        "--profile", action="store_true", help="with --api: importtime and cProfile of a call"
    )
    args = parser.parse_args()
    tools = _tools()
    for argv in tools.values():
        _once(argv)  # warm the page cache
    times: dict[str, list[float]] = {name: [] for name in tools}
    names = list(tools)
    for round_ in range(args.runs):
        for name in names if round_ % 2 == 0 else reversed(names):
            times[name].append(_once(tools[name]))
    for name, values in times.items():
        print(
            f"{name:24} median {statistics.median(values) * 1000:6.1f} ms  "
            f"best {min(values) * 1000:6.1f} ms  ({len(values)} runs)"
        )
    ours, theirs = (statistics.median(times[name]) for name in names)
    print(f"ratio bootsync / sstream-mirror (medians): {ours / theirs:.2f}")
    if args.api:
        api_call(args.runs, profile=args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
