"""The TOML config layer reads lists, choices and flags typed, and names every problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

from common.errors import ConfigError
from common.ops.tomlconfig import ConfigReader, Flags, check_http_url, show

Colour = Literal["red", "green"]
COLOURS: tuple[Colour, ...] = ("red", "green")


def problems(
    data: dict[str, Any], read: Any, *, origins: dict[str, str] | None = None
) -> list[str]:
    """The problem lines ConfigReader.finish raises after ``read(reader)``."""
    reader = ConfigReader(data, source="test.toml", origins=origins)
    read(reader)
    with pytest.raises(ConfigError) as exc:
        reader.finish()
    return [line.strip() for line in str(exc.value).splitlines()[1:]]


def test_a_list_of_strings_is_read_as_a_tuple_and_absent_means_the_default() -> None:
    """``urls = [...]`` becomes a tuple; a missing key gives the default, with no problem."""
    reader = ConfigReader({"urls": ["http://a", "http://b"]}, source="test.toml")
    assert reader.strings("urls", ("http://d",), check=check_http_url) == ("http://a", "http://b")
    assert reader.strings("other", ("x",)) == ("x",)
    reader.finish()


def test_a_list_that_is_not_one_or_is_empty_names_what_it_should_hold() -> None:
    """A string where a list belongs, or an empty list where one item is needed, is refused."""

    def read(reader: ConfigReader) -> None:
        assert reader.strings("urls", ("d",), what="region URLs", non_empty=True) == ("d",)
        assert reader.strings("none", ("d",), what="region URLs", non_empty=True) == ("d",)
        assert reader.strings("names", ()) == ()

    assert problems({"urls": "http://a", "none": [], "names": 5}, read) == [
        'urls: must be a non-empty list of region URLs, got "http://a"',
        "none: must be a non-empty list of region URLs, got []",
        "names: must be a list of strings, got 5",
    ]


def test_each_bad_item_is_named_by_its_index_and_the_default_is_kept() -> None:
    """A non-string and a failing check are both reported, each as ``key[n]``."""

    def read(reader: ConfigReader) -> None:
        urls = reader.strings("urls", ("http://d",), check=check_http_url)
        assert urls == ("http://d",)

    assert problems({"urls": ["http://ok", 5, "ftp://x"]}, read) == [
        "urls[1]: must be a string, got 5",
        'urls[2]: must be an http:// or https:// URL, got "ftp://x"',
    ]


def test_a_problem_with_a_value_from_the_environment_names_the_variable() -> None:
    """Keys in ``origins`` (items of a list too) say which variable their value came from."""

    def read(reader: ConfigReader) -> None:
        reader.table("region").strings("urls", (), check=check_http_url)
        reader.table("log").integer("level", 0, minimum=1)

    origins = {"region.urls": "URLS_VAR"}
    data = {"region": {"urls": ["http://a", "nope"]}, "log": {"level": 0}}
    assert problems(data, read, origins=origins) == [
        'region.urls[1] (from $URLS_VAR): must be an http:// or https:// URL, got "nope"',
        "log.level: must be a whole number ≥ 1, got 0",
    ]


def test_a_choice_comes_back_typed_and_a_wrong_one_lists_the_choices() -> None:
    """The value read is one of the Literal choices; another string is a problem."""
    reader = ConfigReader({"colour": "green"}, source="test.toml")
    colour: Colour = reader.choice("colour", "red", COLOURS)
    assert colour == "green"

    def read(reader: ConfigReader) -> None:
        assert reader.choice("colour", "red", COLOURS) == "red"

    assert problems({"colour": "blue"}, read) == ['colour: must be one of red, green; got "blue"']


def test_an_integer_rule_replaces_the_generic_reason() -> None:
    """``rule`` says why the value is refused; the value follows as usual."""

    def read(reader: ConfigReader) -> None:
        reader.integer("every", 5, minimum=1, maximum=60, rule="the loop must run")

    assert problems({"every": False}, read) == ["every: the loop must run, got false"]


def test_show_writes_lists_as_toml_does() -> None:
    """Lists in messages look like the file: ``["a", 1, true]``."""
    assert show(["a", 1, True]) == '["a", 1, true]'


def test_flags_win_when_given_and_name_themselves_in_problems(tmp_path: Path) -> None:
    """Given flags replace the file's value; bad ones are listed with the flag, all at once."""
    flags = Flags()
    assert flags.string("--listen", None, "file") == "file"
    assert flags.string("--listen", "cli", "file") == "cli"
    assert flags.strings("--region", [], ("file",)) == ("file",)
    assert flags.strings("--region", ["http://a", "http://b"], ("f",)) == ("http://a", "http://b")
    assert flags.path("--data-dir", None, tmp_path) == tmp_path
    assert flags.path("--data-dir", Path("rel"), tmp_path) == Path.cwd() / "rel"
    flags.finish()
    assert flags.string("--url", "ftp://x", "file", check=check_http_url) == "file"
    assert flags.strings("--region", ["http://a", "b"], ("f",), check=check_http_url) == ("f",)
    assert flags.path("--data-dir", Path("a\x00b"), tmp_path) == tmp_path
    with pytest.raises(ConfigError) as exc:
        flags.finish()
    assert str(exc.value).splitlines() == [
        "invalid configuration:",
        '  --url: must be an http:// or https:// URL, got "ftp://x"',
        '  --region: must be an http:// or https:// URL, got "b"',
        '  --data-dir: not a path: "a\\u0000b"',
    ]
