"""Start-up: `bootsync --help` against Canonical's `sstream-mirror --help`.

The two run interleaved (one of each per round, the order alternating), so a
busy spell of a shared machine hits both alike. Prints each tool's median and
best wall time and the ratio of the medians. Usage:

    python bench/startup_bench.py [--runs N]

``bootsync`` is looked up on PATH (``make bench-startup`` puts the venv's first),
``sstream-mirror`` in ``$SSTREAM_BIN`` (default ``.venv-simplestreams/bin``).
"""

from __future__ import annotations

import argparse
import os
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


def _once(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def main() -> int:
    """Time both tools over ``--runs`` interleaved rounds and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds (default 30)")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
