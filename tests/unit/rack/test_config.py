"""The rack config loads documented defaults, refuses to switch the loop off, names bad keys."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from common.errors import ConfigError
from rack.config import Overrides, RackConfig, load_config
from rack.main import main

SHIPPED = Path(__file__).resolve().parents[3] / "etc" / "rackd.toml"


def write(tmp_path: Path, text: str, *, secret: str = "s3cret") -> Path:
    """A config file holding ``text`` plus a secret file it names (unless ``text`` sets one)."""
    secret_file = tmp_path / "rack-secret"
    secret_file.write_text(secret + "\n")
    if "secret" not in text:
        text = f'[region]\nsecret_file = "{secret_file}"\n' + text
    path = tmp_path / "rackd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    """The problem lines of a ConfigError message."""
    return [line.strip() for line in str(exc.value).splitlines()[1:]]


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    """Only the secret given: every other value is its default."""
    config = load_config(write(tmp_path, ""))
    assert config == RackConfig(secret="s3cret")
    assert config.region_urls == ("http://localhost:5240",)
    assert config.data_dir == Path("/var/lib/bootsync/rack")
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 5248)
    assert (config.concurrency, config.interval_minutes, config.interval_s) == (8, 5, 300.0)


def test_the_shipped_file_documents_every_key_with_its_default(tmp_path: Path) -> None:
    """etc/rackd.toml uncommented (bar the either-or secret) means the defaults."""
    text = SHIPPED.read_text(encoding="utf-8")
    uncommented = re.sub(r"(?m)^# ([a-z_]+ = .*)$", r"\1", text)
    uncommented = uncommented.replace('secret = ""\n', "")
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret")
    uncommented = uncommented.replace("/etc/bootsync/rack-secret", str(secret_file))
    path = tmp_path / "rackd.toml"
    path.write_text(uncommented)
    assert load_config(path) == RackConfig(secret="s3cret")
    # every field of RackConfig is documented by exactly one key (secret as secret_file)
    assert len(re.findall(r"(?m)^[a-z_]+ = ", uncommented)) == len(fields(RackConfig))


@pytest.mark.parametrize(
    "value", ["0", '"off"', "false", "true", "-5", "0.5", "1.5", '"5"', "61", "1000000", '"never"']
)
def test_every_attempt_to_switch_the_sync_loop_off_is_refused(tmp_path: Path, value: str) -> None:
    """0, "off", false, fractions and absurdly long intervals all stop the daemon at start."""
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, f"[sync]\ninterval_minutes = {value}\n"))
    assert len(problems(exc)) == 1
    assert problems(exc)[0].startswith(
        "sync.interval_minutes: the rack's sync loop cannot be switched off"
    )
    assert f"got {value}" in problems(exc)[0]


@pytest.mark.parametrize("minutes", [0, -1, 61])
def test_a_config_built_in_code_cannot_switch_the_loop_off_either(minutes: int) -> None:
    """RackConfig itself refuses an interval the loop cannot run with."""
    with pytest.raises(ConfigError, match="cannot be switched off"):
        RackConfig(secret="s", interval_minutes=minutes)


def test_one_and_sixty_minutes_are_accepted(tmp_path: Path) -> None:
    """The bounds themselves are valid intervals."""
    assert load_config(write(tmp_path, "[sync]\ninterval_minutes = 1\n")).interval_minutes == 1
    assert load_config(write(tmp_path, "[sync]\ninterval_minutes = 60\n")).interval_minutes == 60


def test_a_full_file_sets_every_field(tmp_path: Path) -> None:
    """Each key reaches its field; URLs lose a trailing slash."""
    config = load_config(
        write(
            tmp_path,
            (
                '[region]\nurls = ["http://r1:5240/", "https://r2.example:5240"]\nsecret = "inline"\n'
                '[server]\nlisten = "[::]:8080"\nadvertise_url = "http://rack.example:8080/"\n'
                'hostname = "rack-7"\n[storage]\ndata_dir = "/srv/rack"\n'
                "[sync]\ninterval_minutes = 7\nconcurrency = 3\n"
                '[log]\nlevel = "debug"\nformat = "json"\n'
            ),
        )
    )
    assert config == RackConfig(
        region_urls=("http://r1:5240", "https://r2.example:5240"),
        secret="inline",
        listen="[::]:8080",
        advertise_url="http://rack.example:8080/",
        hostname="rack-7",
        data_dir=Path("/srv/rack"),
        interval_minutes=7,
        concurrency=3,
        log_level="debug",
        log_format="json",
    )
    assert config.rack_url == "http://rack.example:8080"
    assert config.rack_name == "rack-7"


def test_the_rack_url_follows_the_listen_address() -> None:
    """Without advertise_url: the bound address, or the host name for a wildcard."""
    assert RackConfig(secret="s", listen="127.0.0.1:5300").rack_url == "http://127.0.0.1:5300"
    assert RackConfig(secret="s", listen="[::1]:5300").rack_url == "http://[::1]:5300"
    assert RackConfig(secret="s", hostname="r9").rack_url == "http://r9:5248"


def test_every_bad_key_is_named_at_once(tmp_path: Path) -> None:
    """Wrong types, bad URLs and unknown keys are all listed, each with its key."""
    with pytest.raises(ConfigError) as exc:
        load_config(
            write(
                tmp_path,
                (
                    '[region]\nurls = ["ftp://x", 5]\nsecret = "a"\nsecret_file = "/etc/x"\n'
                    '[server]\nlisten = "nowhere"\n[sync]\nconcurrency = 0\nspeed = 3\n'
                ),
            )
        )
    found = problems(exc)
    assert any(p.startswith("region.urls[0]: must be an http:// or https:// URL") for p in found)
    assert any(p.startswith("region.urls[1]:") for p in found)
    assert "region.secret: set secret or secret_file, not both" in found
    assert any(p.startswith("server.listen:") for p in found)
    assert any(p.startswith("sync.concurrency:") for p in found)
    assert "sync.speed: unknown key" in found


def test_an_empty_url_list_is_refused(tmp_path: Path) -> None:
    """A rack needs at least one region."""
    with pytest.raises(ConfigError, match=r"region\.urls: must be a non-empty list"):
        load_config(write(tmp_path, '[region]\nurls = []\nsecret = "x"\n'))


def test_a_missing_or_empty_secret_file_names_the_key_and_the_remedy(tmp_path: Path) -> None:
    """The message says which key, which file, and where the secret comes from."""
    missing = tmp_path / "absent"
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, f'[region]\nsecret_file = "{missing}"\n'))
    assert f"region.secret_file: cannot read {missing}" in str(exc.value)
    assert "bootsync rack-secret" in str(exc.value)
    with pytest.raises(ConfigError, match="is empty"):
        load_config(write(tmp_path, "", secret="  "))


def test_command_line_overrides_win_over_the_file(tmp_path: Path) -> None:
    """--region (repeatable), --secret-file, --listen and --data-dir replace the file's values."""
    other = tmp_path / "other-secret"
    other.write_text("from-cli\n")
    config = load_config(
        write(tmp_path, '[server]\nlisten = "127.0.0.1:1"\n'),
        overrides=Overrides(
            region_urls=["http://a:1", "http://b:2/"],
            secret_file=other,
            listen="127.0.0.1:2",
            data_dir=tmp_path / "d",
        ),
    )
    assert config.region_urls == ("http://a:1", "http://b:2")
    assert config.secret == "from-cli"
    assert config.listen == "127.0.0.1:2"
    assert config.data_dir == tmp_path / "d"
    with pytest.raises(ConfigError, match="--region: must be an http"):
        load_config(write(tmp_path, ""), overrides=Overrides(region_urls=["nope"]))


def test_the_daemon_exits_2_naming_the_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bootsync-rackd with interval_minutes = 0 prints the problem and exits 2."""
    path = write(tmp_path, "[sync]\ninterval_minutes = 0\n")
    assert main(["--config", str(path)]) == 2
    assert (
        "sync.interval_minutes: the rack's sync loop cannot be switched off"
        in capsys.readouterr().err
    )


def test_check_config_validates_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check-config on a good file prints ok and does not start anything."""
    path = write(tmp_path, "")
    assert main(["--config", str(path), "--check-config"]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok"


@pytest.mark.parametrize(
    ("typed", "base"),
    [
        ("http://host:5240/MAAS/", "http://host:5240"),
        ("http://host:5240/MAAS", "http://host:5240"),
        ("http://host:5240/", "http://host:5240"),
        ("https://host/MAAS/api/2.0/", "https://host"),
        ("http://proxy.example/bootsync/MAAS/", "http://proxy.example/bootsync"),
        ("http://proxy.example/bootsync", "http://proxy.example/bootsync"),
    ],
)
def test_a_region_url_is_accepted_with_or_without_maas(
    tmp_path: Path, typed: str, base: str
) -> None:
    """The form MAAS users type (…/MAAS/) means the region's base URL, in the file and on the
    command line alike, so the rack never calls …/MAAS/MAAS/rack/v1/register."""
    from_file = load_config(write(tmp_path, f'[region]\nurls = ["{typed}"]\nsecret = "x"\n'))
    from_flag = load_config(write(tmp_path, ""), overrides=Overrides(region_urls=[typed]))
    assert from_file.region_urls == from_flag.region_urls == (base,)
    assert RackConfig(secret="s", region_urls=(typed,)).region_urls == (base,)


def test_sync_transfer_keys_reach_the_downloads_minimum_rate(tmp_path: Path) -> None:
    """[sync] min_rate and rate_window_s set the rack's TransferLimits; a bad one is named."""
    config = load_config(write(tmp_path, "[sync]\nmin_rate = 1024\nrate_window_s = 30\n"))
    assert (config.transfer.min_rate, config.transfer.rate_window_s) == (1024, 30)
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "[sync]\nmin_rate = -5\n"))
    assert problems(exc)[0].startswith("sync.min_rate: must be a whole number ≥ 0")
