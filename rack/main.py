"""``bootsync-rackd``: load the config, then serve and sync until SIGTERM or SIGINT.

``bootsync-rackd --forget-region-key`` clears the region key pinned at the first
registration and exits; the next start pins whatever key the region offers.
Use it only after checking that the region's key was changed on purpose (a new
region installation): until then a rack refuses a region whose key changed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from common.errors import ConfigError
from common.logging import configure_logging, get_logger
from common.runtime import LoopName, run
from common.tomlconfig import read_toml
from rack.app import build_app
from rack.config import DEFAULT_DATA_DIR, Overrides, RackConfig, load_config
from rack.identity import forget_region_key

log = get_logger("rackd")

# A benchmark (bench/) decides between asyncio and uvloop; asyncio for now, as for
# the region: FileResponse's loop.sendfile is missing from uvloop.
RACK_LOOP: LoopName = "asyncio"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The daemon's command line."""
    parser = argparse.ArgumentParser(prog="bootsync-rackd", description="bootsync rack daemon")
    parser.add_argument("--config", type=Path, help="TOML file (default: built-in defaults)")
    parser.add_argument("--region", metavar="URL", action="append", default=[],
                        help="region URL; repeat for several (overrides region.urls)")
    parser.add_argument("--secret-file", type=Path, metavar="FILE",
                        help="file holding the region's shared secret "
                             "(overrides region.secret_file and region.secret)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="overrides server.listen")
    parser.add_argument("--data-dir", type=Path, help="overrides storage.data_dir")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration, print problems, and exit")
    parser.add_argument("--forget-region-key", action="store_true",
                        help="clear the pinned region key, so the next start trusts the key "
                             "the region offers then, and exit")
    return parser.parse_args(argv)


async def serve(config: RackConfig) -> None:
    """Run the rack until a stop signal; shut down in order."""
    runner = web.AppRunner(build_app(config), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.listen_host, config.listen_port, backlog=1024)
        await site.start()
        log.info("rackd_listening", listen=config.listen, data_dir=str(config.data_dir))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("rackd_stopping")
    finally:
        await runner.cleanup()
    log.info("rackd_stopped")


def forget(args: argparse.Namespace) -> int:
    """``--forget-region-key``: needs only the data directory, not a valid secret."""
    data_dir = (args.data_dir or configured_data_dir(args.config)).absolute()
    forgotten = forget_region_key(data_dir)
    if forgotten is None:
        print(f"{data_dir}: no region key was pinned")
    else:
        print(f"{data_dir}: forgot region key {forgotten}; the next start pins the key the "
              "region offers")
    return 0


def configured_data_dir(path: Path | None) -> Path:
    """``storage.data_dir`` of the file at ``path`` (the default without one); ConfigError."""
    data = read_toml(path) if path is not None else {}
    storage = data.get("storage")
    value = storage.get("data_dir") if isinstance(storage, dict) else None
    return Path(value) if isinstance(value, str) else DEFAULT_DATA_DIR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bootsync-rackd``; returns the exit code."""
    args = parse_args(argv)
    try:
        if args.forget_region_key:
            return forget(args)
        config = load_config(args.config, overrides=Overrides(
            region_urls=args.region, secret_file=args.secret_file, listen=args.listen,
            data_dir=args.data_dir))
    except ConfigError as exc:
        print(f"bootsync-rackd: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.config or 'defaults'}: ok")
        return 0
    configure_logging(level=config.log_level, fmt=config.log_format)
    try:
        run(serve(config), default_loop=RACK_LOOP)
    except OSError as exc:
        log.error("rackd_failed", error=str(exc))  # noqa: TRY400 - e.g. port in use
        print(f"bootsync-rackd: {exc}", file=sys.stderr)
        return 1
    return 0
