"""``bootsync apikey``, ``createadmin`` and ``rack-secret``: tools for the region host.

Both open the region's database directly (the config's ``[database] url``: a
PostgreSQL server, or SQLite at ``<data_dir>/region.db``), so they work whether
or not the daemon runs. The key goes to stdout as
``consumer_key:token_key:token_secret`` and nothing else does; log events go
to stderr. A missing or unusable data directory raises ConfigError.
``rack-secret`` prints the secret racks need (the region makes it at its first
start; it is never created here). ``db copy`` copies a whole region database
into an empty one (region/db/copy.py), e.g. from SQLite to PostgreSQL.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import ConfigError

# `bootsync --help` registers these commands (entry point bootsync.commands): the
# database, config and logging (aiosqlite, aiohttp, structlog) are imported by the
# code that runs (tests/unit/cli/test_startup_imports.py).
if TYPE_CHECKING:
    from region.db.connection import Database
    from region.db.users import ApiKey

_USERNAME = re.compile(r"[\w.@+-]{1,150}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_DB_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")
EXIT_REFUSED = 2  # ``db copy`` refused: nothing was written


@dataclass(frozen=True)
class KeyRequest:
    """Who gets a key: the user (made if missing) and whether they must be an admin."""

    username: str
    admin: bool = False
    email: str | None = None
    password: str | None = None


def register(sub: Any) -> None:
    """Add ``apikey``, ``createadmin`` and ``rack-secret`` to the ``bootsync`` parser."""
    p = sub.add_parser(
        "apikey",
        help="print a new API key for a user (created if needed)",
        description="Create the user if needed and print a new API key "
        "(consumer_key:token_key:token_secret) on stdout.",
    )
    p.add_argument("--username", required=True, type=_username)
    p.add_argument("--admin", action="store_true", help="make the user an admin")
    _add_location(p)
    p.set_defaults(run=run_apikey)

    p = sub.add_parser(
        "createadmin",
        help="create or promote an admin and print a new API key",
        description="Create the user as an admin, or make an existing user "
        "an admin, and print a new API key on stdout.",
    )
    p.add_argument("--username", required=True, type=_username)
    p.add_argument("--email", type=_email, help="the admin's email address")
    p.add_argument(
        "--password",
        type=_password,
        help="the admin's password for the web UI (stored as a scrypt hash)",
    )
    _add_location(p)
    p.set_defaults(run=run_createadmin)

    p = sub.add_parser(
        "rack-secret",
        help="print the shared secret racks register with",
        description="Print the region's rack secret (made at the region's "
        "first start) on stdout, for a rack's secret file.",
    )
    _add_location(p)
    p.set_defaults(run=run_rack_secret)

    p = sub.add_parser(
        "db",
        help="region database tools (copy)",
        description="Tools for the region database.",
    )
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    c = db_sub.add_parser(
        "copy",
        help="copy a whole region database into an empty one",
        description="Copy every table of a region database (ids kept) into an empty "
        "database, e.g. from SQLite to PostgreSQL; print the rows of each table. "
        "Exits 2 (nothing written) when the target is not empty or the schemas differ.",
    )
    c.add_argument("--from", dest="source", required=True, type=_db_url, metavar="URL")
    c.add_argument("--to", dest="target", required=True, type=_db_url, metavar="URL")
    c.set_defaults(run=run_db_copy)


def _add_location(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="the region's config file (its storage.data_dir is used)",
    )
    where.add_argument("--data-dir", type=Path, metavar="DIR", help="the region's data directory")


def _username(text: str) -> str:
    if not _USERNAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: use up to 150 letters, digits and @ . + - _")
    return text


def _email(text: str) -> str:
    if not _EMAIL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an email address")
    return text


def _password(text: str) -> str:
    from region.db.web_auth import MIN_PASSWORD_LENGTH  # noqa: PLC0415 - start-up stays cheap

    if len(text) < MIN_PASSWORD_LENGTH:
        raise argparse.ArgumentTypeError(f"use at least {MIN_PASSWORD_LENGTH} characters")
    return text


def _db_url(text: str) -> str:
    if not text.startswith(_DB_SCHEMES) or text == "sqlite:///":
        raise argparse.ArgumentTypeError(
            "use sqlite:///<absolute path> or postgresql://user@host/db"
        )
    return text


def data_dir_of(args: argparse.Namespace) -> Path:
    """The data directory named by ``--data-dir``, ``--config`` or the default config."""
    if args.data_dir is not None:
        return Path(args.data_dir).absolute()
    from region.config import load_config  # noqa: PLC0415 - start-up stays cheap

    return load_config(args.config).data_dir


def database_path(data_dir: Path, name: str | None = None) -> Path:
    """``<data_dir>/region.db`` (or ``name``); ConfigError when the directory is missing."""
    from region.config import DB_NAME  # noqa: PLC0415 - start-up stays cheap

    if not data_dir.is_dir():
        raise ConfigError(
            f"region data directory {data_dir} does not exist (start the region "
            "once, or give --data-dir/--config)"
        )
    db = data_dir / (name or DB_NAME)
    if db.exists() and not db.is_file():
        raise ConfigError(f"{db} is not a database file")
    return db


def database_of(args: argparse.Namespace) -> Path | str:
    """The region database: SQLite in ``--data-dir``, else the config's ``[database]``.

    A PostgreSQL URL is returned as is; a SQLite file is checked by :func:`database_path`.
    """
    if args.data_dir is not None:
        return database_path(Path(args.data_dir).absolute())
    from region.config import load_config  # noqa: PLC0415 - start-up stays cheap

    config = load_config(args.config)
    where = config.database
    if isinstance(where, str):
        return where
    if where == config.db_path:
        return database_path(config.data_dir)
    return database_path(where.parent, where.name)


async def issue_key(db_path: Path | str, request: KeyRequest) -> ApiKey:
    """Create or update the user of ``request`` and return a new API key for them.

    ``db_path`` is a SQLite file or a PostgreSQL URL.
    """
    import sqlite3  # noqa: PLC0415 - start-up stays cheap

    from region.db.connection import open_db  # noqa: PLC0415
    from region.db.copy import shown  # noqa: PLC0415

    try:
        async with open_db(db_path, readers=1) as db:
            return await _issue(db, request)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(f"{shown(db_path)}: cannot use the region database: {exc}") from exc


async def _issue(db: Database, request: KeyRequest) -> ApiKey:
    from common.ops.logging import get_logger  # noqa: PLC0415 - start-up stays cheap
    from region.db import users as repo_users  # noqa: PLC0415
    from region.db import web_auth  # noqa: PLC0415
    from region.db.users import ApiKey  # noqa: PLC0415

    log = get_logger("admin_cli")
    user = await repo_users.get_user(db, request.username)
    if user is None:
        user = await repo_users.create_user(
            db, request.username, email=request.email or "", is_admin=request.admin
        )
        log.info("user_created", user=user.username, admin=user.is_admin)
    elif (request.admin and not user.is_admin) or (
        request.email is not None and request.email != user.email
    ):
        await repo_users.update_user(
            db, user.id, is_admin=True if request.admin else None, email=request.email
        )
        log.info("user_updated", user=user.username, admin=request.admin or user.is_admin)
    if request.password is not None:
        await web_auth.set_password(db, user.id, request.password)
        log.info("user_password_set", user=user.username)
    key = ApiKey(*await repo_users.create_token(db, user.id))
    log.info("api_key_created", user=user.username, consumer_key=key.consumer_key[:6])
    return key


def _issue_and_print(args: argparse.Namespace, request: KeyRequest) -> int:
    from common.ops.runtime import run  # noqa: PLC0415 - start-up stays cheap

    key = run(issue_key(database_of(args), request), default_loop="asyncio")
    print(key)
    return 0


def run_apikey(args: argparse.Namespace) -> int:
    """``bootsync apikey``: print a new key for ``--username`` (made admin with ``--admin``)."""
    return _issue_and_print(args, KeyRequest(username=args.username, admin=args.admin))


def run_createadmin(args: argparse.Namespace) -> int:
    """``bootsync createadmin``: make ``--username`` an admin and print a new key."""
    return _issue_and_print(
        args,
        KeyRequest(username=args.username, admin=True, email=args.email, password=args.password),
    )


def run_rack_secret(args: argparse.Namespace) -> int:
    """``bootsync rack-secret``: print the secret; ConfigError if the region never made one."""
    from region.rackhub.secret import read_secret  # noqa: PLC0415 - start-up stays cheap

    print(read_secret(data_dir_of(args)))
    return 0


def run_db_copy(args: argparse.Namespace) -> int:
    """``bootsync db copy``: copy ``--from`` into the empty ``--to``; print each table's rows.

    Exit 0 when copied and verified, 2 when refused (target not empty, schemas
    differ: nothing written), 1 (ConfigError) when a database cannot be used.
    """
    import sqlite3  # noqa: PLC0415 - start-up stays cheap
    import sys  # noqa: PLC0415

    from common.ops.runtime import run  # noqa: PLC0415
    from region.db.copy import CopyRefusedError, TableCopy, copy_database  # noqa: PLC0415

    def progress(table: TableCopy) -> None:
        print(f"copied {table.name}: {table.rows} row(s)", file=sys.stderr, flush=True)

    try:
        report = run(
            copy_database(args.source, args.target, on_table=progress), default_loop="asyncio"
        )
    except CopyRefusedError as exc:
        print(f"bootsync db copy: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(f"cannot copy the region database: {exc}") from exc
    width = max((len(t.name) for t in report.tables), default=5)
    print(f"{'table':<{width}}  rows")
    for table in report.tables:
        print(f"{table.name:<{width}}  {table.rows}")
    print(
        f"copied {report.rows} row(s) in {len(report.tables)} tables from {report.source} "
        f"to {report.target} (schema version {report.schema_version}) "
        f"in {report.duration_s:.1f} s; row counts verified"
    )
    return 0
