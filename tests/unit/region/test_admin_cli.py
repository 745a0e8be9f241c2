"""``bootsync apikey`` and ``createadmin`` print a working key and nothing else on stdout."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from common.errors import ConfigError
from region import admin_cli
from region.db import users as repo_users
from region.db.connection import open_db
from region.db.users import User

KEY = re.compile(r"([A-Za-z0-9]{18}):([A-Za-z0-9]{18}):([A-Za-z0-9]{32})\n")
Events = list[MutableMapping[str, Any]]


@pytest.fixture(autouse=True)
def logs_off_stdout(log_events: Events) -> Events:
    """Capture log events (``bootsync`` sends them to stderr; tests keep stdout clean)."""
    return log_events


def parser() -> argparse.ArgumentParser:
    """A parser holding just the two admin subcommands, as ``bootsync`` registers them."""
    top = argparse.ArgumentParser(prog="bootsync")
    admin_cli.register(top.add_subparsers(dest="command", required=True))
    return top


def run(*argv: str) -> int:
    """Parse ``argv`` and run the chosen command."""
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


def who(db_path: Path, output: str) -> User | None:
    """The user the printed key belongs to (checked against the database)."""
    match = KEY.fullmatch(output)
    assert match, repr(output)

    async def lookup() -> User | None:
        async with open_db(db_path) as db:
            return await repo_users.user_for_token(db, *match.groups())

    return asyncio.run(lookup())


def test_apikey_creates_the_user_and_prints_only_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], log_events: Events
) -> None:
    """stdout is exactly ``ck:tk:ts`` and the key belongs to a new non-admin user."""
    assert run("apikey", "--username", "alice", "--data-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    user = who(tmp_path / "region.db", out)
    assert user is not None
    assert user.username == "alice"
    assert not user.is_admin
    assert out.split(":")[2].strip() not in repr(log_events)
    assert [e["event"] for e in log_events if e["event"] != "db_migrated"] == [
        "user_created",
        "api_key_created",
    ]


def test_apikey_twice_gives_two_working_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second call reuses the user and adds a key; the first key keeps working."""
    run("apikey", "--username", "alice", "--data-dir", str(tmp_path))
    first = capsys.readouterr().out
    run("apikey", "--username", "alice", "--data-dir", str(tmp_path))
    second = capsys.readouterr().out
    assert first != second
    assert who(tmp_path / "region.db", first) == who(tmp_path / "region.db", second)


def test_apikey_admin_flag_makes_an_admin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--admin promotes an existing user."""
    run("apikey", "--username", "bob", "--data-dir", str(tmp_path))
    capsys.readouterr()
    run("apikey", "--username", "bob", "--admin", "--data-dir", str(tmp_path))
    user = who(tmp_path / "region.db", capsys.readouterr().out)
    assert user is not None
    assert user.is_admin


def test_createadmin_creates_or_promotes_and_sets_the_email(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """createadmin makes a new admin, and promotes an existing user with a new email."""
    run(
        "createadmin",
        "--username",
        "root",
        "--email",
        "root@example.invalid",
        "--data-dir",
        str(tmp_path),
    )
    new = who(tmp_path / "region.db", capsys.readouterr().out)
    run("apikey", "--username", "carol", "--data-dir", str(tmp_path))
    capsys.readouterr()
    run(
        "createadmin",
        "--username",
        "carol",
        "--email",
        "carol@example.invalid",
        "--data-dir",
        str(tmp_path),
    )
    promoted = who(tmp_path / "region.db", capsys.readouterr().out)
    assert new is not None
    assert new.is_admin
    assert new.email == "root@example.invalid"
    assert promoted is not None
    assert promoted.is_admin
    assert promoted.email == "carol@example.invalid"


def test_config_file_names_the_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--config reads storage.data_dir from the region's config file."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "regiond.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\n', encoding="utf-8")
    run("createadmin", "--username", "root", "--config", str(config))
    assert who(data / "region.db", capsys.readouterr().out) is not None


def test_missing_data_dir_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data directory that does not exist is a ConfigError naming it; nothing is printed."""
    with pytest.raises(ConfigError, match=r"region data directory .*nope does not exist"):
        run("apikey", "--username", "alice", "--data-dir", str(tmp_path / "nope"))
    assert capsys.readouterr().out == ""


def test_a_data_dir_whose_database_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    """A region.db that is not a database is reported, not a traceback."""
    (tmp_path / "region.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="cannot use the region database"):
        run("apikey", "--username", "alice", "--data-dir", str(tmp_path))


@pytest.mark.parametrize(
    "argv",
    [
        ["apikey", "--username", "bad name"],
        ["apikey", "--username", "a", "--config", "x", "--data-dir", "y"],
        ["createadmin", "--username", "a", "--email", "nope"],
        ["apikey"],
    ],
)
def test_bad_arguments_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad usernames and emails, and both locations at once, are argparse errors (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().out == ""
