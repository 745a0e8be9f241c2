"""The ``bootsync`` command line: local tools now, the MAAS CLI grammar later."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from common.cli import mirror_cmd, sample_stream_cmd
from common.errors import BootsyncError
from common.logging import configure_logging
from simplestreams import StreamFormatError

_COMMANDS = (sample_stream_cmd, mirror_cmd)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every local subcommand."""
    parser = argparse.ArgumentParser(
        prog="bootsync", description="bootsync: boot images for bare-metal provisioning.")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="auto", choices=["auto", "json", "console"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(sub)
    # The CLI is the composition root: region-host commands (apikey, createadmin)
    # live with the region's database code and are added here.
    from region import admin_cli  # noqa: PLC0415

    admin_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bootsync``; returns the process exit code."""
    parser = build_parser()
    # Positionals may follow options (`mirror URL DIR --keyring K 'arch=amd64'`), which
    # argparse leaves unparsed; a command that takes trailing words collects them.
    args, extra = parser.parse_known_args(argv)
    if extra:
        collect = getattr(args, "collect_extra", None)
        if collect is None or any(word.startswith("-") for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        collect(args, extra, parser)
    configure_logging(level=args.log_level, fmt=args.log_format)
    try:
        code: int = args.run(args)
    except (BootsyncError, StreamFormatError) as exc:
        print(f"bootsync {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bootsync {args.command}: interrupted", file=sys.stderr)
        return 130
    return code
