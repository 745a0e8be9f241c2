"""The profile store: where it lives, what it keeps, and who may read it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from common.cli.maascli_http import Credentials
from common.cli.maascli_profiles import Profile, ProfileStore, config_dir
from common.errors import ConfigError
from tests.unit.cli.describe_sample import describe


def _profile(name: str = "admin", key: str | None = "ck:tk:ts") -> Profile:
    return Profile(
        name=name,
        url="http://127.0.0.1:5240/MAAS/api/2.0/",
        credentials=None if key is None else Credentials.parse(key),
        description=describe(),
    )


def test_config_dir_follows_xdg_config_home(tmp_path: Path) -> None:
    """``$XDG_CONFIG_HOME/bootsync`` when set, else ``~/.config/bootsync``."""
    assert config_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "bootsync"
    assert config_dir({}) == Path("~/.config/bootsync").expanduser()


def test_saved_profiles_are_private_to_the_user(tmp_path: Path) -> None:
    """The file is 0600 and its directory 0700, because the file holds API keys."""
    store = ProfileStore(tmp_path / "conf" / "bootsync" / "profiles.json")
    store.save(_profile())
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert [p.name for p in store.path.parent.iterdir()] == ["profiles.json"]


def test_an_existing_open_directory_is_tightened(tmp_path: Path) -> None:
    """A config directory made world-readable by someone else becomes 0700 on save."""
    directory = tmp_path / "bootsync"
    directory.mkdir(mode=0o755)
    ProfileStore(directory / "profiles.json").save(_profile())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_profiles_round_trip_with_key_and_description(tmp_path: Path) -> None:
    """Name, URL, key and the cached describe document come back as saved."""
    store = ProfileStore(tmp_path / "profiles.json")
    store.save(_profile())
    store.save(_profile("anon", key=None))
    loaded = store.load()
    assert set(loaded) == {"admin", "anon"}
    assert loaded["admin"] == _profile()
    assert str(loaded["admin"].credentials) == "ck:tk:ts"
    assert loaded["anon"].credentials is None


def test_delete_removes_one_profile(tmp_path: Path) -> None:
    """Deleting keeps the others and reports whether the name existed."""
    store = ProfileStore(tmp_path / "profiles.json")
    store.save(_profile("a"))
    store.save(_profile("b"))
    assert store.delete("a")
    assert not store.delete("a")
    assert set(store.load()) == {"b"}


def test_a_missing_file_means_no_profiles(tmp_path: Path) -> None:
    """Before the first login there is nothing to load, and that is not an error."""
    assert ProfileStore(tmp_path / "nope" / "profiles.json").load() == {}


def test_a_corrupt_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """Broken JSON is reported with the file's path, never silently dropped."""
    path = tmp_path / "profiles.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=str(path)):
        ProfileStore(path).load()


@pytest.mark.parametrize("key", ["ck:tk", "ck:tk:ts:x", "ck::ts", ""])
def test_malformed_keys_are_refused(key: str) -> None:
    """A key needs exactly three non-empty parts."""
    with pytest.raises(ValueError, match="three parts"):
        Credentials.parse(key)
