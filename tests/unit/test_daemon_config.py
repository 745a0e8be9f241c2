"""Both daemons take settings from flags, environment, file and defaults, and name every problem."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.ops.envconfig import RACKD_ENV, REGIOND_ENV, prepare_data_dir
from rack import main as rackd
from rack.config import load_config as load_rack
from region import main as regiond
from region.config import Overrides
from region.config import load_config as load_region

REPO = Path(__file__).resolve().parents[2]
BAD_FILE = """
[server]
listen = "0.0.0.0:5240"
shutdown_grace_s = -1
colour = "blue"
[log]
level = 3
"""


@pytest.fixture(autouse=True)
def no_bootsync_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemons read os.environ: start every test without BOOTSYNC_* variables."""
    for name in list(os.environ):
        if name.startswith("BOOTSYNC_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    """``text`` written to ``path``."""
    path.write_text(text, encoding="utf-8")
    return path


def secret_file(tmp_path: Path) -> Path:
    """A readable rack secret."""
    return write(tmp_path / "secret", "s3cret\n")


def test_the_command_line_wins_over_the_environment_which_wins_over_the_file(
    tmp_path: Path,
) -> None:
    """listen from --listen, else from $BOOTSYNC_REGIOND_LISTEN, else from the file."""
    path = write(tmp_path / "r.toml", '[server]\nlisten = "127.0.0.1:1"\n')
    env = {
        "BOOTSYNC_REGIOND_LISTEN": "127.0.0.1:2",
        "BOOTSYNC_REGIOND_LOG_LEVEL": "debug",
        "BOOTSYNC_REGIOND_SHUTDOWN_GRACE_S": "30",
        "UNRELATED": "x",
    }
    assert load_region(path).listen == "127.0.0.1:1"
    from_env = load_region(path, environ=env)
    assert (from_env.listen, from_env.log_level, from_env.shutdown_grace_s) == (
        "127.0.0.1:2",
        "debug",
        30,
    )
    assert (
        load_region(path, environ=env, overrides=Overrides(listen="127.0.0.1:3")).listen
        == "127.0.0.1:3"
    )
    assert load_region(path, environ={"BOOTSYNC_REGIOND_LISTEN": ""}).listen == "127.0.0.1:1"


def test_a_bad_value_from_the_environment_names_its_key_and_variable(tmp_path: Path) -> None:
    """Every problem is listed; those from the environment say which variable it was."""
    env = {"BOOTSYNC_REGIOND_SHUTDOWN_GRACE_S": "soon", "BOOTSYNC_REGIOND_LOG_LEVEL": "loud"}
    with pytest.raises(ConfigError) as exc:
        load_region(write(tmp_path / "r.toml", "[import]\nconcurrency = 0\n"), environ=env)
    lines = str(exc.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "server.shutdown_grace_s (from $BOOTSYNC_REGIOND_SHUTDOWN_GRACE_S)",
        "log.level (from $BOOTSYNC_REGIOND_LOG_LEVEL)",
        "import.concurrency",
    ]


def test_the_rack_takes_region_urls_and_a_secret_file_from_the_environment(tmp_path: Path) -> None:
    """A space or comma separated URL list; a secret file there voids a secret in the file."""
    path = write(tmp_path / "k.toml", '[region]\nsecret = "from-the-file"\n')
    config = load_rack(
        path,
        environ={
            "BOOTSYNC_RACKD_REGION_URLS": "http://r1:5240, http://r2:5240/",
            "BOOTSYNC_RACKD_SECRET_FILE": str(secret_file(tmp_path)),
        },
    )
    assert config.region_urls == ("http://r1:5240", "http://r2:5240")
    assert config.secret == "s3cret"
    with pytest.raises(
        ConfigError,
        match=re.escape("region.urls[1] (from $BOOTSYNC_RACKD_REGION_URLS): must be an http"),
    ):
        load_rack(path, environ={"BOOTSYNC_RACKD_REGION_URLS": "http://r1:5240 ftp://r2"})


def test_the_shipped_files_document_every_environment_variable() -> None:
    """etc/*.toml name exactly the variables the daemons read, with their keys."""
    for name, variables in (("regiond", REGIOND_ENV), ("rackd", RACKD_ENV)):
        text = (REPO / "etc" / f"{name}.toml").read_text()
        documented = dict(re.findall(r"(?m)^#   (BOOTSYNC_[A-Z_]+)\s+([a-z_.]+)", text))
        assert documented == {v.name: v.key for v in variables}


@pytest.mark.parametrize("daemon", ["regiond", "rackd"])
def test_check_config_prints_every_problem_with_its_key_and_exits_2(
    daemon: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown key, a wrong type and an impossible value are all reported at once."""
    path = write(tmp_path / "d.toml", BAD_FILE)
    main, extra = (
        (regiond.main, [])
        if daemon == "regiond"
        else (rackd.main, ["--secret-file", str(secret_file(tmp_path))])
    )
    assert main(["--config", str(path), "--check-config", *extra]) == 2
    err = capsys.readouterr().err
    assert f"bootsync-{daemon}: invalid configuration in {path}:" in err
    for problem in (
        "server.shutdown_grace_s: must be a whole number from 0 to 600, got -1",
        "server.colour: unknown key",
        "log.level: must be a string, got 3",
    ):
        assert problem in err


@pytest.mark.parametrize("daemon", ["regiond", "rackd"])
def test_check_config_passes_a_good_file_without_creating_the_data_dir(
    daemon: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0 and "ok"; the missing data directory is only checked, not made."""
    data = tmp_path / "data" / daemon
    path = write(tmp_path / "d.toml", f'[storage]\ndata_dir = "{data}"\n')
    main, extra = (
        (regiond.main, [])
        if daemon == "regiond"
        else (rackd.main, ["--secret-file", str(secret_file(tmp_path))])
    )
    assert main(["--config", str(path), "--check-config", *extra]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: ok"
    assert out[1:] == (["database: ok"] if daemon == "regiond" else [])
    assert not data.exists()


@pytest.mark.parametrize("daemon", ["regiond", "rackd"])
def test_a_data_dir_that_cannot_be_made_is_refused_with_its_key(
    daemon: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file where a parent directory should be: check and start both exit 2 and say why."""
    (tmp_path / "blocker").write_text("")
    monkeypatch.setenv(f"BOOTSYNC_{daemon.upper()}_DATA_DIR", str(tmp_path / "blocker" / "d"))
    main, extra = (
        (regiond.main, [])
        if daemon == "regiond"
        else (rackd.main, ["--secret-file", str(secret_file(tmp_path))])
    )
    assert main(["--check-config", *extra]) == 2
    assert "storage.data_dir: " in capsys.readouterr().err
    assert main(["--listen", "127.0.0.1:1", *extra]) == 2
    err = capsys.readouterr().err
    assert f"bootsync-{daemon}: storage.data_dir: cannot create {tmp_path}/blocker/d" in err


def test_a_missing_data_dir_is_created_for_the_daemon_only(tmp_path: Path) -> None:
    """Created with its parents, at most 0750; a file in its place is refused by key."""
    old = os.umask(0o022)
    try:
        prepare_data_dir(tmp_path / "a" / "b", key="storage.data_dir")
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o750
    prepare_data_dir(tmp_path / "a" / "b", key="storage.data_dir")  # existing: fine
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"^storage.data_dir: .* is not a directory$"):
        prepare_data_dir(tmp_path / "file", key="storage.data_dir")
