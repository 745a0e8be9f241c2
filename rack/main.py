"""``bootsync-rackd``: load the config, then serve and sync until SIGTERM or SIGINT.

``bootsync-rackd --forget-region-key`` clears the region key pinned at the first
registration and exits; the next start pins whatever key the region offers.
Use it only after checking that the region's key was changed on purpose (a new
region installation): until then a rack refuses a region whose key changed.

Under systemd (``Type=notify``) it sends READY=1 once it listens, STATUS= lines
as pulls run, WATCHDOG=1 from the event loop and STOPPING=1 at shutdown.
SIGTERM drains (no new pulls; a running one gets ``server.shutdown_grace_s`` to
finish, then is cancelled), then closes the web server. SIGHUP re-reads the log
level and format.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from common.errors import ConfigError
from common.ops import daemon
from common.ops.daemon import Milestones, check_data_dir
from common.ops.envconfig import RACKD_ENV, prepare_data_dir
from common.ops.logging import configure_logging, get_logger
from common.ops.runtime import LoopName, run
from common.ops.tomlconfig import read_toml
from common.version import VERSION
from rack.app import PullWork, build_app
from rack.config import DEFAULT_DATA_DIR, Overrides, RackConfig, load_config
from rack.identity import forget_region_key
from rack.probe import check_region

log = get_logger("rackd")

# Files are served with common.storage.fileserve.SendfileResponse (os.sendfile in worker
# threads), which keeps disk reads off the event loop on either loop. The rack's API
# is small, so uvloop's request-rate gain buys little, while it raised the rack's peak
# RSS by 12-15 MiB with no faster pull (bench/rack_bench.py, bench/RESULTS.md): the
# rack runs on asyncio. BOOTSYNC_EVENT_LOOP=uvloop switches.
RACK_LOOP: LoopName = "asyncio"
_DATA_DIR_VAR = next(v.name for v in RACKD_ENV if v.key == "storage.data_dir")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The daemon's command line."""
    parser = argparse.ArgumentParser(prog="bootsync-rackd", description="bootsync rack daemon")
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    parser.add_argument("--config", type=Path, help="TOML file (default: built-in defaults)")
    parser.add_argument(
        "--region",
        metavar="URL",
        action="append",
        default=[],
        help="region URL; repeat for several (overrides region.urls)",
    )
    parser.add_argument(
        "--secret-file",
        type=Path,
        metavar="FILE",
        help="file holding the region's shared secret "
        "(overrides region.secret_file and region.secret)",
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="overrides server.listen")
    parser.add_argument("--data-dir", type=Path, help="overrides storage.data_dir")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration, the secret and the data directory, "
        "print every problem, and exit (0: fine, 2: problems)",
    )
    parser.add_argument(
        "--check-region",
        action="store_true",
        help="with --check-config (implied): also reach every region URL and probe its "
        "registration (nothing is registered); print what would stop the rack registering",
    )
    parser.add_argument(
        "--forget-region-key",
        action="store_true",
        help="clear the pinned region key, so the next start trusts the key "
        "the region offers then, and exit",
    )
    return parser.parse_args(argv)


def read_config(args: argparse.Namespace) -> RackConfig:
    """The configuration: command line > ``BOOTSYNC_RACKD_*`` > file > defaults; ConfigError."""
    return load_config(
        args.config,
        overrides=Overrides(
            region_urls=args.region,
            secret_file=args.secret_file,
            listen=args.listen,
            data_dir=args.data_dir,
        ),
        environ=os.environ,
    )


async def serve(config: RackConfig, args: argparse.Namespace | None = None) -> None:
    """Run the rack until a stop signal; shut down in order (see :func:`daemon.serve`).

    ``args`` (the command line) lets SIGHUP re-read the configuration.
    """
    await daemon.serve(
        build_app(config),
        config,
        work=PullWork,
        milestones=Milestones(
            listening=lambda: log.info(
                "rackd_listening", listen=config.listen, data_dir=str(config.data_dir)
            ),
            stopping=lambda: log.info("rackd_stopping", grace_s=config.shutdown_grace_s),
            stopped=lambda: log.info("rackd_stopped"),
        ),
        reread=None if args is None else lambda: read_config(args),
    )


def forget(args: argparse.Namespace) -> int:
    """``--forget-region-key``: needs only the data directory, not a valid secret."""
    data_dir = (args.data_dir or configured_data_dir(args.config)).absolute()
    forgotten = forget_region_key(data_dir)
    if forgotten is None:
        print(f"{data_dir}: no region key was pinned")
    else:
        print(
            f"{data_dir}: forgot region key {forgotten}; the next start pins the key the "
            "region offers"
        )
    return 0


def configured_data_dir(path: Path | None) -> Path:
    """``$BOOTSYNC_RACKD_DATA_DIR``, else ``storage.data_dir`` of the file at ``path`` (the
    default without one); ConfigError."""
    from_env = os.environ.get(_DATA_DIR_VAR, "").strip()
    if from_env:
        return Path(from_env)
    data = read_toml(path) if path is not None else {}
    storage = data.get("storage")
    value = storage.get("data_dir") if isinstance(storage, dict) else None
    return Path(value) if isinstance(value, str) else DEFAULT_DATA_DIR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bootsync-rackd``; returns the exit code (2: bad configuration)."""
    args = parse_args(argv)
    try:
        if args.forget_region_key:
            return forget(args)
        config = read_config(args)
        if args.check_config or args.check_region:
            code = check_data_dir("bootsync-rackd", config.data_dir, args.config)
            if args.check_region:
                code = max(code, check_region("bootsync-rackd", config))
            return code
        prepare_data_dir(config.data_dir, key="storage.data_dir")
    except ConfigError as exc:
        print(f"bootsync-rackd: {exc}", file=sys.stderr)
        return 2
    configure_logging(level=config.log_level, fmt=config.log_format)
    try:
        run(serve(config, args), default_loop=RACK_LOOP)
    except OSError as exc:
        log.error("rackd_failed", error=str(exc))  # noqa: TRY400 - e.g. port in use
        print(f"bootsync-rackd: {exc}", file=sys.stderr)
        return 1
    return 0
