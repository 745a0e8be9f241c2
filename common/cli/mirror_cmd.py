"""``bootsync mirror SOURCE_URL DIR [FILTER...]``: a verified, signed local mirror."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.transfer.limits import (
    DEFAULT_MAX_METADATA_BYTES,
    DEFAULT_MIN_RATE,
    DEFAULT_RATE_WINDOW_S,
    MIN_METADATA_BYTES,
)

# Registering the command is argparse only: the mirror (aiohttp, gnupg, the event
# loop) is imported by run_command (tests/unit/cli/test_startup_imports.py).
if TYPE_CHECKING:
    from common.mirror.sync import MirrorPlan
    from common.ops.runtime import LoopName
    from common.trust.keyrings import Keyring, SigningKey
    from simplestreams.filters import ItemFilter

DEFAULT_KEY_DIR = "mirror-signing-key"
# bench/mirror_bench.py measured both loops for the mirror: asyncio was faster and
# peaked lower in memory (bench/RESULTS.md), so the mirror runs on asyncio.
MIRROR_LOOP: LoopName = "asyncio"


def register(sub: Any) -> None:
    """Add the subcommand to the ``bootsync`` parser."""
    p = sub.add_parser(
        "mirror",
        help="make or update a verified local mirror of a SimpleStreams source",
        description=__doc__ + "\n\nFilters are sstream-mirror's: key=value, key!=value, "
        'key~regex, key!~regex; all must match; a missing field counts as "".',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source_url", help="mirror root or streams/v1/index.(s)json URL")
    p.add_argument("dir", type=Path, help="the local mirror directory")
    p.add_argument("filters", nargs="*", metavar="FILTER", type=_filter)
    trust = p.add_mutually_exclusive_group(required=True)
    trust.add_argument(
        "--keyring", type=Path, help="keyring (binary or armored) that must have signed the source"
    )
    trust.add_argument(
        "--no-verify",
        action="store_true",
        help="accept an unsigned index.json source (sha256s are still checked)",
    )
    p.add_argument(
        "--max",
        type=_positive,
        default=1,
        dest="max_versions",
        help="versions to keep per product (default 1)",
    )
    p.add_argument("--concurrency", type=_positive, default=8, help="downloads at once (default 8)")
    metadata = p.add_mutually_exclusive_group()
    metadata.add_argument(
        "--signing-key",
        type=Path,
        help="GnuPG home (directory) or exported secret key (file) that signs the "
        "mirror's metadata; default: a key made on first use in the user's data "
        "directory",
    )
    metadata.add_argument(
        "--keep-upstream-metadata",
        action="store_true",
        help="publish the upstream's signed index and products documents unchanged, "
        "as sstream-mirror does, so the upstream's keyring (MAAS's default) validates "
        "the mirror; they still list what the filters left out. Default: the mirror's "
        "own metadata listing only what it holds, signed with --signing-key",
    )
    p.add_argument(
        "--delete",
        action="store_true",
        help="remove what earlier runs selected and no filter of this run selects "
        "(default: runs accumulate, as sstream-mirror's do)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only print what would be fetched and removed; write nothing",
    )
    progress = p.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=True,
        help="show progress (the default: a bar on a terminal, log events elsewhere)",
    )
    progress.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress"
    )
    slow = p.add_argument_group(
        "slow upstreams",
        "A file or document slower than --min-rate over a whole window fails (not\n"
        "retried), as does one taking longer than twice the window plus its size at\n"
        "--min-rate.",
    )
    slow.add_argument(
        "--min-rate",
        type=_whole(0),
        default=DEFAULT_MIN_RATE,
        metavar="BYTES_PER_S",
        help=f"minimum transfer rate; 0 waits for ever (default {DEFAULT_MIN_RATE})",
    )
    slow.add_argument(
        "--rate-window",
        type=_seconds,
        default=DEFAULT_RATE_WINDOW_S,
        metavar="SECONDS",
        help=f"the window the rate is averaged over (default {DEFAULT_RATE_WINDOW_S:g})",
    )
    slow.add_argument(
        "--max-metadata-bytes",
        type=_whole(MIN_METADATA_BYTES),
        default=DEFAULT_MAX_METADATA_BYTES,
        metavar="BYTES",
        help=f"largest index or products document read (default {DEFAULT_MAX_METADATA_BYTES})",
    )
    p.set_defaults(run=run_command, collect_extra=_collect_filters)


def _collect_filters(
    args: argparse.Namespace, words: list[str], parser: argparse.ArgumentParser
) -> None:
    from simplestreams.filters import ItemFilter  # noqa: PLC0415 - start-up stays cheap

    try:
        args.filters = [*args.filters, *(ItemFilter.parse(w) for w in words)]
    except ValueError as exc:
        parser.error(f"mirror: {exc}")


def _filter(text: str) -> ItemFilter:
    from simplestreams.filters import ItemFilter  # noqa: PLC0415 - start-up stays cheap

    try:
        return ItemFilter.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ≥ 1")
    return value


def _whole(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ≥ {minimum}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/bootsync`` (default ``~/.local/share/bootsync``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bootsync"


def resolve_signing_key(given: Path | None, mirror_dir: Path) -> SigningKey:
    """The mirror's signing key; refuses one kept inside the published directory."""
    from common.trust.keyrings import SigningKey  # noqa: PLC0415 - start-up stays cheap

    home = given if given is not None else user_data_dir() / DEFAULT_KEY_DIR
    if home.resolve().is_relative_to(mirror_dir.resolve()):
        raise SystemExit(
            f"bootsync mirror: error: the signing key {home} is inside the "
            f"mirror {mirror_dir}, which would publish it; keep it elsewhere"
        )
    if given is not None and given.is_file():
        return SigningKey.import_secret(given, user_data_dir() / "imported-keys")
    if given is not None:
        return SigningKey.open(home)
    return SigningKey.open_or_create(home, name="bootsync mirror", email="mirror@bootsync.invalid")


def run_command(args: argparse.Namespace) -> int:
    """Run the mirror; exit 0 when the mirror is complete, 1 when files failed or were refused."""
    from common.mirror.sync import (  # noqa: PLC0415 - start-up stays cheap
        MirrorFailedError,
        MirrorOptions,
        plan_mirror,
        run_mirror,
    )
    from common.ops.runtime import run  # noqa: PLC0415
    from common.transfer.limits import TransferLimits  # noqa: PLC0415
    from common.trust.keyrings import load_keyring  # noqa: PLC0415

    keyring: Keyring | None = None if args.no_verify else load_keyring(args.keyring)
    # A dry run signs nothing, and upstream metadata is already signed.
    key = (
        None
        if args.dry_run or args.keep_upstream_metadata
        else resolve_signing_key(args.signing_key, args.dir)
    )
    opts = MirrorOptions(
        source_url=args.source_url,
        target=args.dir,
        keyring=keyring,
        signing_key=key,
        filters=tuple(args.filters),
        max_versions=args.max_versions,
        concurrency=args.concurrency,
        show_progress=args.progress,
        delete=args.delete,
        keep_upstream_metadata=args.keep_upstream_metadata,
        transfer=TransferLimits(
            min_rate=args.min_rate,
            rate_window_s=args.rate_window,
            max_metadata_bytes=args.max_metadata_bytes,
        ),
    )
    try:
        if args.dry_run:
            print_plan(args.dir, run(plan_mirror(opts), default_loop=MIRROR_LOOP))
            return 0
        summary = run(run_mirror(opts), default_loop=MIRROR_LOOP)
    except MirrorFailedError as exc:
        print(f"bootsync mirror: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a local failure (the directory, the disk): a message, no traceback
        print(f"bootsync mirror: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if key is not None:
            key.close()  # stops the gpg-agent that signing started
    print(
        f"{args.dir}: {summary.products} products; {summary.files_fetched} files fetched "
        f"({summary.bytes_fetched} bytes), {summary.files_reused} already held, "
        f"{summary.files_removed} removed, in {summary.duration_s:.1f} s"
    )
    for refusal in summary.refused:
        print(f"bootsync mirror: refused: {refusal}", file=sys.stderr)
    if summary.refused:
        print(
            f"bootsync mirror: error: {len(summary.refused)} item(s) or document(s) refused "
            "(not mirrored); the rest is",
            file=sys.stderr,
        )
        return 1
    return 0


def print_plan(target: Path, plan: MirrorPlan) -> None:
    """``--dry-run``'s report: one line per file to fetch or remove, then the totals."""
    for path, size in plan.to_fetch:
        print(f"would fetch {path} ({size} bytes)")
    for path in plan.to_remove:
        print(f"would remove {path}")
    print(
        f"{target}: dry run: {plan.products} products; {len(plan.to_fetch)} files would be "
        f"fetched ({plan.bytes_to_fetch} bytes), {plan.files_held} already held, "
        f"{len(plan.to_remove)} would be removed; nothing was written"
    )
