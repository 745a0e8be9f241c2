"""Benchmark: the mirror's ratios to sstream-mirror and curl, one interleaved run per round.

Two streams from nginx on 127.0.0.1 (sendfile, no rate limit), page cache warm:

* small: the sample stream at ``--small-file-size`` (8M) with one version,
  25 files / 126 MB; ``bootsync mirror --max 1`` against ``sstream-mirror
  --max 1`` (both verify the signature and every sha256). Target: bootsync
  ≥ 1.5× faster (wall time, start-up and teardown included).
* large: the sample stream at ``--file-size`` (40M), two versions, 50 files /
  1.2 GiB; ``bootsync mirror --max 2 --concurrency 8`` (sha256, fsync) against
  ``sstream-mirror --max 2`` and ``xargs -P 8 curl`` (no hashing, no fsync).
  Targets: ≥ 2.0× sstream-mirror, ≥ 0.65× curl's throughput. Also prints CPU
  seconds (user + sys of the client) per GiB for bootsync (verified) and curl.

Tools run interleaved (the order alternating per round), ``--repeat`` rounds;
medians are compared. ``uptime``'s load is printed before each run (the
machine may be shared). Usage:

    .venv/bin/python bench/mirror_ratio_bench.py [--repeat 3] [--only small|large]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from _common import (
    GIB,
    MIB,
    REPO,
    BenchError,
    Measured,
    Stream,
    ensure_nginx,
    find_program,
    find_sstream_mirror,
    load_average,
    make_stream,
    measure,
    nginx_serving,
    parse_size,
)

CONCURRENCY = 8

Command = Callable[[str, Path], list[str]]


def tools(
    bootsync: Path, sstream: Path, stream: Stream, work: Path, versions: int
) -> dict[str, Command]:
    gnupg = work / "gnupg-empty"

    def ours(url: str, out: Path) -> list[str]:
        return [str(bootsync), "--log-format", "json", "mirror", url, str(out), "--keyring",
                str(stream.keyring), "--max", str(versions), "--concurrency", str(CONCURRENCY),
                "--no-progress"]  # fmt: skip

    def ours_upstream(url: str, out: Path) -> list[str]:
        # sstream-mirror's output: the upstream's signed documents, no signing of our own.
        return [*ours(url, out), "--keep-upstream-metadata"]

    def theirs(url: str, out: Path) -> list[str]:
        shutil.rmtree(gnupg, ignore_errors=True)
        gnupg.mkdir(mode=0o700)
        return [str(sstream), "--keyring", str(stream.keyring), "--max", str(versions), url,
                str(out)]  # fmt: skip

    def curl(url: str, out: Path) -> list[str]:
        listing = work / "curl-list.txt"
        listing.write_text("".join(f"{out / p} {url}{p}\n" for p in stream.files))
        return ["xargs", "-a", str(listing), "-P", str(CONCURRENCY), "-n", "2", "curl", "-sf",
                "--create-dirs", "-o"]  # fmt: skip

    return {
        "bootsync": ours,
        "bootsync --keep-upstream-metadata": ours_upstream,
        "sstream-mirror": theirs,
        f"xargs -P {CONCURRENCY} curl": curl,
    }


def run_round(
    names: list[str], commands: dict[str, Command], url: str, work: Path, label: str
) -> dict[str, tuple[Measured, str]]:
    got = {}
    env = {"XDG_DATA_HOME": str(work / "xdg"), "GNUPGHOME": str(work / "gnupg-empty")}
    for name in names:
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(["sync"], check=True)
        out.mkdir(parents=True)
        load = load_average()
        log = work / "logs" / f"{label}-{name.replace(' ', '')}.log"
        got[name] = (measure(commands[name](url, out), env, log), load)
        shutil.rmtree(out)
    return got


def bench(
    what: str, stream: Stream, commands: dict[str, Command], url: str, work: Path, *, repeat: int
) -> dict[str, list[Measured]]:
    names = list(commands)
    runs: dict[str, list[Measured]] = {name: [] for name in names}
    for name in names:  # unmeasured: signing key, page cache, a broken tool fails fast
        run_round([name], commands, url, work, f"{what}-warmup")
    for rnd in range(repeat):
        order = names if rnd % 2 == 0 else names[::-1]
        for name, (got, load) in run_round(order, commands, url, work, f"{what}-{rnd}").items():
            runs[name].append(got)
            print(
                f"  {what:<5} {name:<34} {got.seconds:6.2f} s  "
                f"{stream.total / MIB / got.seconds:7.1f} MiB/s  CPU {got.cpu_s:5.2f} s  "
                f"(load {load})",
                flush=True,
            )
    return runs


def summary(what: str, stream: Stream, runs: dict[str, list[Measured]]) -> None:
    med = {name: statistics.median(r.seconds for r in got) for name, got in runs.items()}
    cpu = {name: statistics.median(r.cpu_s for r in got) for name, got in runs.items()}
    gib = stream.total / GIB
    print(f"\n{what}: {len(stream.files)} files, {stream.total / MIB:.0f} MiB")
    for name in runs:
        print(
            f"  {name:<34} median {med[name]:6.2f} s  {stream.total / MIB / med[name]:7.1f} MiB/s"
            f"  CPU {cpu[name]:5.2f} s = {cpu[name] / gib:.2f} s/GiB"
        )
    target = 1.5 if what == "small" else 2.0
    for ours in (name for name in med if name.startswith("bootsync")):
        speedup = med["sstream-mirror"] / med[ours]
        print(f"  {ours} vs sstream-mirror: {speedup:.2f}× (target ≥ {target}×)")
    curl = f"xargs -P {CONCURRENCY} curl"
    if curl in med:
        print(
            f"  bootsync vs curl (throughput): {med[curl] / med['bootsync']:.2f}× (target ≥ 0.65×)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("small", "large"))
    parser.add_argument("--file-size", default="40M")
    parser.add_argument("--small-file-size", default="8M")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    venv_bin = Path(sys.executable).parent
    bootsync = find_program("bootsync", venv_bin / "bootsync", REPO / ".venv/bin/bootsync")
    sstream = find_sstream_mirror()
    nginx = ensure_nginx()
    base: Path = args.work.resolve()
    work = base / "ratio"
    shutil.rmtree(work / "logs", ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    plans = []
    if args.only in (None, "small"):
        small = make_stream(
            bootsync, base, args.small_file_size, parse_size(args.small_file_size), versions=1
        )
        plans.append(("small", small, 1))
    if args.only in (None, "large"):
        large = make_stream(bootsync, base, args.file_size, parse_size(args.file_size))
        plans.append(("large", large, 2))
    try:
        with nginx_serving(nginx, base / "streams", work / "nginx") as root:
            for what, stream, versions in plans:
                commands = tools(bootsync, sstream, stream, work, versions)
                if what == "small":
                    del commands[f"xargs -P {CONCURRENCY} curl"]
                else:
                    del commands["bootsync --keep-upstream-metadata"]
                runs = bench(
                    what, stream, commands, f"{root}{stream.root.name}/", work, repeat=args.repeat
                )
                summary(what, stream, runs)
    finally:
        home = work / "xdg" / "bootsync" / "mirror-signing-key"
        if home.is_dir():
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                           check=False, capture_output=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"mirror_ratio_bench: error: {exc}", file=sys.stderr)
        sys.exit(1)
