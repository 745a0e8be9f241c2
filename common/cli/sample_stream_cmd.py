"""``bootsync sample-stream DIR``: write a signed, MAAS-shaped demo stream."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

# Registering the command stays cheap: the writer (gnupg) and logging are imported by run().
_DEFAULT_FILE_SIZE = 1 << 20


def _newest(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y%m%d").replace(tzinfo=None).date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date as YYYYMMDD") from None


def _size(text: str) -> int:
    from common.mirror.samplestream import parse_size  # noqa: PLC0415 - start-up stays cheap

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: Any) -> None:
    """Add the subcommand to the ``bootsync`` parser."""
    p = sub.add_parser(
        "sample-stream", help="write a signed sample SimpleStreams tree", description=__doc__
    )
    p.add_argument("dir", type=Path, help="where to write the stream")
    p.add_argument(
        "--file-size",
        type=_size,
        default=_DEFAULT_FILE_SIZE,
        help="size of each large file (squashfs, kernel, initrd), e.g. 25M, 1G (default 1M)",
    )
    p.add_argument("--versions", type=int, default=2, help="versions per product (default 2)")
    p.add_argument(
        "--newest",
        type=_newest,
        default=date(2025, 7, 18),
        help="version name (YYYYMMDD) of the newest version",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the stream and print where its keyring is."""
    from common.mirror.samplestream import write_sample_stream  # noqa: PLC0415 - start-up stays cheap
    from common.ops.logging import get_logger  # noqa: PLC0415

    if args.versions < 1:
        print("bootsync sample-stream: error: --versions must be at least 1", file=sys.stderr)
        return 2
    stream = write_sample_stream(
        args.dir, file_size=args.file_size, versions=args.versions, newest=args.newest
    )
    get_logger("sample_stream").info(
        "sample_stream_written",
        root=str(stream.root),
        files=stream.files,
        bytes=stream.total_bytes,
        keyring=str(stream.keyring),
        fingerprint=stream.fingerprint,
    )
    print(
        f"{stream.root}: {stream.files} files, {stream.total_bytes} bytes; keyring {stream.keyring}"
    )
    return 0
