"""``bootsync-regiond``: load the config, then serve until SIGTERM or SIGINT.

Under systemd (``Type=notify``) it sends READY=1 once it listens and its
database is migrated, STATUS= lines as imports run, WATCHDOG=1 from the event
loop and STOPPING=1 at shutdown. SIGTERM drains (no new imports; a running one
gets ``server.shutdown_grace_s`` to finish, then is cancelled), then closes the
web server and the database. SIGHUP re-reads the log level and format.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from common.errors import ConfigError
from common.ops import daemon
from common.ops.daemon import Milestones, check_data_dir
from common.ops.envconfig import prepare_data_dir
from common.ops.logging import configure_logging, get_logger
from common.ops.runtime import LoopName, run
from common.version import VERSION
from region.app import ImportWork, build_app
from region.config import Overrides, RegionConfig, load_config
from region.db.connection import check_db

log = get_logger("regiond")

# Files are served with common.storage.fileserve.SendfileResponse (os.sendfile in worker
# threads), which works on any loop and keeps disk reads off the event loop; with it,
# uvloop costs no file throughput and answers the API 12-16% faster than asyncio
# (bench/serve_bench.py, bench/RESULTS.md). BOOTSYNC_EVENT_LOOP=asyncio switches back.
REGION_LOOP: LoopName = "uvloop"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The daemon's command line."""
    parser = argparse.ArgumentParser(prog="bootsync-regiond", description="bootsync region daemon")
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    parser.add_argument("--config", type=Path, help="TOML file (default: built-in defaults)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="overrides server.listen")
    parser.add_argument("--data-dir", type=Path, help="overrides storage.data_dir")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration and the data directory, print every "
        "problem, and exit (0: fine, 2: problems)",
    )
    return parser.parse_args(argv)


def read_config(args: argparse.Namespace) -> RegionConfig:
    """The configuration: command line > ``BOOTSYNC_REGIOND_*`` > file > defaults; ConfigError."""
    return load_config(
        args.config,
        overrides=Overrides(listen=args.listen, data_dir=args.data_dir),
        environ=os.environ,
    )


async def serve(config: RegionConfig, args: argparse.Namespace | None = None) -> None:
    """Run the region until a stop signal; shut down in order (see :func:`daemon.serve`).

    ``args`` (the command line) lets SIGHUP re-read the configuration.
    """
    await daemon.serve(
        await build_app(config),
        config,
        work=ImportWork,
        milestones=Milestones(
            listening=lambda: log.info(
                "regiond_listening", listen=config.listen, data_dir=str(config.data_dir)
            ),
            stopping=lambda: log.info("regiond_stopping", grace_s=config.shutdown_grace_s),
            stopped=lambda: log.info("regiond_stopped"),
        ),
        starting="starting: opening the database",
        reread=None if args is None else lambda: read_config(args),
    )


def database_problem(config: RegionConfig) -> str | None:
    """Why the configured database cannot serve this region, or None (blocking: before the loop)."""
    try:
        found, shipped = run(check_db(config.database), default_loop="asyncio")
    except (sqlite3.Error, OSError) as exc:
        return f"database.url: cannot reach the database: {exc}"
    if found > shipped:
        return (
            f"database.url: the schema is at version {found}, newer than this "
            f"bootsync's {shipped}: upgrade bootsync first"
        )
    return None


def check_database(config: RegionConfig) -> int:
    """``--check-config``'s database step: 0, or 2 after printing why."""
    problem = database_problem(config)
    if problem is not None:
        print(f"bootsync-regiond: invalid database:\n  {problem}", file=sys.stderr)
        return 2
    print("database: ok")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bootsync-regiond``; returns the exit code (2: bad configuration)."""
    args = parse_args(argv)
    try:
        config = read_config(args)
        if args.check_config:
            return check_data_dir(
                "bootsync-regiond", config.data_dir, args.config
            ) or check_database(config)
        prepare_data_dir(config.data_dir, key="storage.data_dir")
    except ConfigError as exc:
        print(f"bootsync-regiond: {exc}", file=sys.stderr)
        return 2
    configure_logging(level=config.log_level, fmt=config.log_format)
    try:
        run(serve(config, args), default_loop=REGION_LOOP)
    except OSError as exc:
        log.error("regiond_failed", error=str(exc))  # noqa: TRY400 - e.g. port in use
        print(f"bootsync-regiond: {exc}", file=sys.stderr)
        return 1
    return 0
