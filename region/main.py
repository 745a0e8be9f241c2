"""``bootsync-regiond``: load the config, then serve until SIGTERM or SIGINT."""

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
from region.app import build_app
from region.config import Overrides, RegionConfig, load_config

log = get_logger("regiond")

# The region serves large files: aiohttp's FileResponse uses loop.sendfile, which
# uvloop lacks (it then copies through a thread pool at about half the speed).
# bench/serve_bench.py measures both loops; bench/RESULTS.md records the choice.
REGION_LOOP: LoopName = "asyncio"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The daemon's command line."""
    parser = argparse.ArgumentParser(prog="bootsync-regiond",
                                     description="bootsync region daemon")
    parser.add_argument("--config", type=Path, help="TOML file (default: built-in defaults)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="overrides server.listen")
    parser.add_argument("--data-dir", type=Path, help="overrides storage.data_dir")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration, print problems, and exit")
    return parser.parse_args(argv)


async def serve(config: RegionConfig) -> None:
    """Run the region until a stop signal; shut down in order."""
    app = await build_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.listen_host, config.listen_port, backlog=1024)
        await site.start()
        log.info("regiond_listening", listen=config.listen, data_dir=str(config.data_dir))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("regiond_stopping")
    finally:
        await runner.cleanup()
    log.info("regiond_stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bootsync-regiond``; returns the exit code."""
    args = parse_args(argv)
    try:
        config = load_config(args.config,
                             overrides=Overrides(listen=args.listen, data_dir=args.data_dir))
    except ConfigError as exc:
        print(f"bootsync-regiond: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"{args.config or 'defaults'}: ok")
        return 0
    configure_logging(level=config.log_level, fmt=config.log_format)
    try:
        run(serve(config), default_loop=REGION_LOOP)
    except OSError as exc:
        log.error("regiond_failed", error=str(exc))  # noqa: TRY400 - e.g. port in use
        print(f"bootsync-regiond: {exc}", file=sys.stderr)
        return 1
    return 0
