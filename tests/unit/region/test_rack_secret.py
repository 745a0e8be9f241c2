"""The rack secret: made once, private, printed by ``bootsync rack-secret``, checked exactly."""

from __future__ import annotations

import argparse
import re
import stat
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from common.errors import ConfigError
from region import admin_cli
from region.rackhub.secret import (
    bearer_token,
    check_bearer,
    load_or_create_secret,
    read_secret,
    secret_path,
)

Events = list[MutableMapping[str, Any]]


@pytest.fixture(autouse=True)
def logs_off_stdout(log_events: Events) -> Events:
    """Capture log events so stdout holds only what the command prints."""
    return log_events


def bootsync(argv: list[str]) -> int:
    """Run a ``bootsync`` region-host subcommand as the CLI registers it.

    (``common.cli.main`` is not called: it configures logging onto the captured
    stdout, which outlives the test.)
    """
    top = argparse.ArgumentParser(prog="bootsync")
    admin_cli.register(top.add_subparsers(dest="command", required=True))
    args = top.parse_args(argv)
    code: int = args.run(args)
    return code


class TestSecretFile:
    """``<data_dir>/rack-secret``."""

    def test_the_first_start_makes_a_private_hex_secret_and_later_starts_keep_it(
        self, tmp_path: Path
    ) -> None:
        """64 hex characters, mode 0600; a second load returns the same secret."""
        first = load_or_create_secret(tmp_path)
        again = load_or_create_secret(tmp_path)
        assert re.fullmatch(r"[0-9a-f]{64}", first)
        assert again == first
        assert secret_path(tmp_path).stat().st_mode & 0o777 == 0o600

    def test_reading_a_missing_secret_says_the_region_makes_it(self, tmp_path: Path) -> None:
        """ConfigError names the file and the first start; nothing is created."""
        with pytest.raises(ConfigError, match="rack-secret does not exist: the region creates"):
            read_secret(tmp_path)
        assert not secret_path(tmp_path).exists()

    def test_a_short_or_spaced_secret_is_refused(self, tmp_path: Path) -> None:
        """A file that cannot be a secret is a ConfigError, not a weak secret."""
        for text in ("short\n", "a" * 20 + " " + "b" * 20):
            secret_path(tmp_path).write_text(text)
            with pytest.raises(ConfigError, match="not a rack secret"):
                read_secret(tmp_path)

    def test_a_secret_others_can_read_is_used_and_made_private(
        self, tmp_path: Path, log_events: Events
    ) -> None:
        """Mode 0644 still works and is tightened to 0600, with a permissions event."""
        secret_path(tmp_path).write_text("c" * 64 + "\n")
        secret_path(tmp_path).chmod(0o644)
        assert read_secret(tmp_path) == "c" * 64
        assert stat.S_IMODE(secret_path(tmp_path).stat().st_mode) == 0o600
        assert [(e["event"], e["was"], e["now"]) for e in log_events] == [
            ("data_dir_permissions_tightened", "0644", "0600")
        ]

    def test_a_secret_readable_by_its_group_only_is_kept_so(
        self, tmp_path: Path, log_events: Events
    ) -> None:
        """Mode 0640 (an operator's choice) is left as it is, silently."""
        secret_path(tmp_path).write_text("c" * 64 + "\n")
        secret_path(tmp_path).chmod(0o640)
        assert read_secret(tmp_path) == "c" * 64
        assert stat.S_IMODE(secret_path(tmp_path).stat().st_mode) == 0o640
        assert log_events == []


class TestBearer:
    """``Authorization: Bearer <secret>``."""

    @pytest.mark.parametrize(
        ("header", "ok"),
        [
            ("Bearer s3cret", True),
            ("bearer   s3cret  ", True),
            ("Bearer s3cre", False),
            ("Bearer s3cret2", False),
            ("Bearer ", False),
            ("OAuth s3cret", False),
            ("s3cret", False),
            (None, False),
            ("Bearer sécret", False),
        ],
    )
    def test_only_the_exact_secret_passes(self, header: str | None, ok: bool) -> None:
        """The scheme is case-insensitive; the token must match exactly."""
        assert check_bearer(header, "s3cret") is ok

    def test_the_token_is_read_from_the_header(self) -> None:
        """bearer_token returns the token, or None for other schemes."""
        assert bearer_token("Bearer abc") == "abc"
        assert bearer_token("Basic abc") is None


class TestCommand:
    """``bootsync rack-secret``."""

    def test_it_prints_the_secret_and_nothing_else(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """stdout is the secret and a newline."""
        secret = load_or_create_secret(tmp_path)
        assert bootsync(["rack-secret", "--data-dir", str(tmp_path)]) == 0
        assert capsys.readouterr().out == f"{secret}\n"

    def test_without_a_secret_it_fails_clearly_and_creates_none(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """ConfigError (``bootsync`` prints it and exits 1) names the file; nothing is made."""
        with pytest.raises(ConfigError, match=f"{tmp_path}/rack-secret does not exist"):
            bootsync(["rack-secret", "--data-dir", str(tmp_path)])
        assert capsys.readouterr().out == ""
        assert not secret_path(tmp_path).exists()

    def test_it_reads_the_data_dir_from_the_region_config(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--config FILE`` uses the file's storage.data_dir."""
        secret = load_or_create_secret(tmp_path)
        config = tmp_path / "regiond.toml"
        config.write_text(f'[storage]\ndata_dir = "{tmp_path}"\n')
        assert bootsync(["rack-secret", "--config", str(config)]) == 0
        assert capsys.readouterr().out == f"{secret}\n"
