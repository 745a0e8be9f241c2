"""The region config loads documented defaults, applies overrides and reports every bad key."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.transfer.limits import TransferLimits
from region.config import DB_NAME, Overrides, RegionConfig, load_config, shipped_keyring

SHIPPED = Path(__file__).resolve().parents[3] / "etc" / "regiond.toml"


def write(tmp_path: Path, text: str) -> Path:
    """A config file holding ``text``."""
    path = tmp_path / "regiond.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    """The problem lines of a ConfigError message."""
    return [line.strip() for line in str(exc.value).splitlines()[1:]]


def test_no_file_means_the_defaults() -> None:
    """Without a file every value is its default."""
    config = load_config(None)
    assert config == RegionConfig()
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 5240)
    assert config.data_dir == Path("/var/lib/bootsync/region")
    assert (
        config.db_path
        == Path("/var/lib/bootsync/region") / DB_NAME
        == Path("/var/lib/bootsync/region/region.db")
    )
    assert (config.import_interval_minutes, config.import_concurrency) == (60, 8)
    assert config.default_source_url == "http://images.maas.io/ephemeral-v3/stable/"
    assert (config.frozen_after_hours, config.http_proxy) == (72, "")


def test_default_keyring_is_the_shipped_ubuntu_keyring() -> None:
    """An empty default_keyring resolves to common/data/ubuntu-cloudimage-keyring.gpg."""
    keyring = load_config(None).default_keyring
    assert keyring == shipped_keyring()
    assert keyring.name == "ubuntu-cloudimage-keyring.gpg"
    assert keyring.is_file()


def test_the_shipped_file_means_defaults_and_documents_the_real_ones(tmp_path: Path) -> None:
    """etc/regiond.toml as shipped gives the defaults, and so does every line uncommented."""
    text = SHIPPED.read_text(encoding="utf-8")
    uncommented = re.sub(r"(?m)^# ([a-z_]+ = .*)$", r"\1", text)
    assert text.count("\n[") == 8
    assert load_config(SHIPPED) == RegionConfig()
    assert load_config(write(tmp_path, uncommented)) == RegionConfig()
    # every field of RegionConfig is documented by exactly one key
    assert len(re.findall(r"(?m)^[a-z_]+ = ", uncommented)) == len(fields(RegionConfig))


def test_a_full_file_sets_every_field(tmp_path: Path, gpg_keyring_path: Path) -> None:
    """Each key reaches its field."""
    path = write(
        tmp_path,
        f"""
[server]
listen = "[::]:8080"
[storage]
data_dir = "{tmp_path}/data"
[log]
level = "debug"
format = "json"
[import]
interval_minutes = 5
concurrency = 64
create_default_source = false
default_source_url = "https://mirror.example/stable/"
default_keyring = "{gpg_keyring_path}"
frozen_after_hours = 1
[proxy]
http_proxy = "http://proxy.example:3128/"
""",
    )
    config = load_config(path)
    assert (config.listen_host, config.listen_port) == ("::", 8080)
    assert config.data_dir == tmp_path / "data"
    assert (config.log_level, config.log_format) == ("debug", "json")
    assert (config.import_interval_minutes, config.import_concurrency) == (5, 64)
    assert config.create_default_source is False
    assert config.default_source_url == "https://mirror.example/stable/"
    assert config.default_keyring == gpg_keyring_path
    assert config.frozen_after_hours == 1
    assert config.http_proxy == "http://proxy.example:3128/"


def test_every_problem_is_listed_with_its_key(tmp_path: Path) -> None:
    """Wrong types, impossible values and unknown keys are all reported together."""
    path = write(
        tmp_path,
        """
colour = "blue"
[server]
listen = "0.0.0.0"
[storage]
data_dir = "relative/dir"
[log]
format = "xml"
level = 3
[import]
interval_minutes = 0
concurrency = 65
create_default_source = "yes"
default_source_url = "ftp://mirror/"
default_keyring = "/no/such/keyring.gpg"
frozen_after_hours = 1.5
intervall = 5
[proxy]
http_proxy = "proxy:3128"
""",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).splitlines()[0] == f"invalid configuration in {path}:"
    assert problems(exc) == [
        'server.listen: must be HOST:PORT (IPv6 as [ADDR]:PORT), got "0.0.0.0"',
        'storage.data_dir: must be an absolute path, got "relative/dir"',
        "log.level: must be a string, got 3",
        'log.format: must be one of auto, json, console; got "xml"',
        "import.interval_minutes: must be a whole number ≥ 1, got 0",
        "import.concurrency: must be a whole number from 1 to 64, got 65",
        'import.create_default_source: must be true or false, got "yes"',
        'import.default_source_url: must be an http:// or https:// URL, got "ftp://mirror/"',
        'import.default_keyring: no such file "/no/such/keyring.gpg"',
        "import.frozen_after_hours: must be a whole number ≥ 1, got 1.5",
        'proxy.http_proxy: must be an http:// or https:// URL, got "proxy:3128"',
        "colour: unknown key",
        "import.intervall: unknown key",
    ]


def test_a_section_that_is_not_a_table_is_reported(tmp_path: Path) -> None:
    """``import = 5`` names the section."""
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "import = 5\n"))
    assert problems(exc) == ["import: must be a table, got 5"]


def test_booleans_are_not_whole_numbers(tmp_path: Path) -> None:
    """TOML true is not accepted where a number is wanted."""
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "[import]\nconcurrency = true\n"))
    assert problems(exc) == ["import.concurrency: must be a whole number from 1 to 64, got true"]


def test_unreadable_and_invalid_files_name_the_file(tmp_path: Path) -> None:
    """A missing file and broken TOML are ConfigErrors naming the path."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 2"):
        load_config(write(tmp_path, "[server]\nlisten = \n"))


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:5240", "127.0.0.1", 5240),
        ("[::]:5240", "::", 5240),
        ("[::1]:1", "::1", 1),
        ("region.example:65535", "region.example", 65535),
    ],
)
def test_listen_splits_into_host_and_port(listen: str, host: str, port: int) -> None:
    """IPv4, bracketed IPv6 and names all split into host and port."""
    config = load_config(None, overrides=Overrides(listen=listen))
    assert (config.listen, config.listen_host, config.listen_port) == (listen, host, port)


@pytest.mark.parametrize(
    "listen",
    ["::1:5240", "[::1]", "host:0", "host:70000", ":5240", "[127.0.0.1]:80", "host:port", "host:٥"],
)
def test_bad_listen_overrides_name_the_flag(listen: str) -> None:
    """A bad --listen is refused with the flag named."""
    with pytest.raises(ConfigError, match="--listen: "):
        load_config(None, overrides=Overrides(listen=listen))


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    """--listen and --data-dir replace the file's values; a relative dir becomes absolute."""
    path = write(tmp_path, '[server]\nlisten = "0.0.0.0:1"\n[storage]\ndata_dir = "/srv/x"\n')
    config = load_config(path, overrides=Overrides(listen="127.0.0.1:5241", data_dir=Path("rel")))
    assert config.listen_port == 5241
    assert config.data_dir == Path.cwd() / "rel"


def test_overrides_do_not_hide_file_problems(tmp_path: Path) -> None:
    """A bad file is reported even when the bad key is overridden."""
    with pytest.raises(ConfigError, match=r"server\.listen"):
        load_config(
            write(tmp_path, '[server]\nlisten = "nope"\n'),
            overrides=Overrides(listen="127.0.0.1:1"),
        )


def test_import_transfer_keys_reach_the_transfer_limits(tmp_path: Path) -> None:
    """[import] min_rate, rate_window_s and max_metadata_bytes set the region's TransferLimits."""
    config = load_config(
        write(
            tmp_path,
            "[import]\nmin_rate = 65536\nrate_window_s = 5\nmax_metadata_bytes = 1048576\n",
        )
    )
    assert config.transfer == TransferLimits(
        min_rate=65536, rate_window_s=5, max_metadata_bytes=1 << 20
    )
    assert load_config(write(tmp_path, "[import]\nmin_rate = 0\n")).transfer.enforced is False


def test_impossible_transfer_keys_are_each_named(tmp_path: Path) -> None:
    """A negative rate, a zero window and a tiny metadata cap are three named problems."""
    with pytest.raises(ConfigError) as exc:
        load_config(
            write(tmp_path, "[import]\nmin_rate = -1\nrate_window_s = 0\nmax_metadata_bytes = 10\n")
        )
    assert [p.split(":")[0] for p in problems(exc)] == [
        "import.min_rate",
        "import.rate_window_s",
        "import.max_metadata_bytes",
    ]
