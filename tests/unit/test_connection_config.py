"""Both daemons' connection limits and /metrics access in their TOML files: defaults, values,
and every bad value named by its key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common.errors import ConfigError
from rack.config import load_config as load_rack
from region.config import load_config as load_region

SECRET = '[region]\nsecret = "s"\n'
Loader = Callable[[Path], Any]
DAEMONS: list[tuple[str, Loader, str]] = [
    ("region", load_region, ""),
    ("rack", load_rack, SECRET),
]


def load(tmp_path: Path, loader: Loader, prefix: str, text: str) -> Any:
    """``loader`` on a file holding ``prefix`` and ``text``."""
    path = tmp_path / "daemon.toml"
    path.write_text(prefix + text)
    return loader(path)


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    """The problem lines of a ConfigError."""
    return [line.strip() for line in str(exc.value).splitlines()[1:]]


@pytest.mark.parametrize(("name", "loader", "prefix"), DAEMONS)
def test_the_defaults_close_a_silent_client_after_10_s_and_allow_64_per_address(
    tmp_path: Path, name: str, loader: Loader, prefix: str
) -> None:
    """No keys: header timeout 10 s, 64 connections per client, /metrics on the main port
    without a token."""
    config = load(tmp_path, loader, prefix, "")
    assert (config.header_timeout_s, config.max_client_connections) == (10, 64)
    assert (config.metrics_listen, config.metrics_token) == ("", "")


@pytest.mark.parametrize(("name", "loader", "prefix"), DAEMONS)
def test_every_key_reaches_its_setting_and_the_token_is_read_from_its_file(
    tmp_path: Path, name: str, loader: Loader, prefix: str
) -> None:
    """header_timeout_s, max_client_connections, metrics.listen and metrics.token_file."""
    token = tmp_path / "metrics-token"
    token.write_text("t0ken\n")
    config = load(
        tmp_path,
        loader,
        prefix,
        "[server]\nheader_timeout_s = 3\nmax_client_connections = 0\n"
        f'[metrics]\nlisten = "127.0.0.1:9240"\ntoken_file = "{token}"\n',
    )
    assert (config.header_timeout_s, config.max_client_connections) == (3, 0)
    assert (config.metrics_listen, config.metrics_token) == ("127.0.0.1:9240", "t0ken")
    assert "t0ken" not in repr(config)


@pytest.mark.parametrize(("name", "loader", "prefix"), DAEMONS)
def test_bad_values_are_refused_naming_each_key(
    tmp_path: Path, name: str, loader: Loader, prefix: str
) -> None:
    """A timeout of 0, a negative cap, a listen that is no HOST:PORT, a token file that is
    missing, and a metrics listen equal to the main one are each a problem with its key."""
    with pytest.raises(ConfigError) as exc:
        load(
            tmp_path,
            loader,
            prefix,
            "[server]\nheader_timeout_s = 0\nmax_client_connections = -1\n"
            '[metrics]\nlisten = "nowhere"\ntoken_file = "/nonexistent/token"\n',
        )
    found = problems(exc)
    assert [p.split(":")[0] for p in found] == [
        "server.header_timeout_s",
        "server.max_client_connections",
        "metrics.listen",
        "metrics.token_file",
    ]
    assert "cannot read /nonexistent/token" in found[3]
    same = '[server]\nlisten = "127.0.0.1:7000"\n[metrics]\nlisten = "127.0.0.1:7000"\n'
    with pytest.raises(ConfigError, match=r"metrics\.listen: must differ from server\.listen"):
        load(tmp_path, loader, prefix, same)


@pytest.mark.parametrize("text", ["", "two words\n", "  \n"])
def test_a_token_file_must_hold_one_word(tmp_path: Path, text: str) -> None:
    """An empty token file, or one holding spaces inside, is refused."""
    token = tmp_path / "metrics-token"
    token.write_text(text)
    with pytest.raises(ConfigError, match="must hold one word, the token"):
        load(tmp_path, load_region, "", f'[metrics]\ntoken_file = "{token}"\n')
