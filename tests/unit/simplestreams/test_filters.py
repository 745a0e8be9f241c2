"""The sstream-mirror filter grammar behaves as operators expect."""

from __future__ import annotations

import pytest

from simplestreams import ItemFilter, matches_all, parse_filters

FIELDS = {"arch": "amd64", "release": "noble", "os": "ubuntu", "bootloader-type": "uefi"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("arch=amd64", True),
        ("arch=amd", False),
        ("arch!=amd64", False),
        ("arch!=arm64", True),
        ("release~(jammy|noble)", True),
        ("release~oble", True),
        ("release~^oble", False),
        ("release!~(jammy|noble)", False),
        ("bootloader-type=uefi", True),
        ("kflavor=", True),
        ("kflavor~.", False),
        ("kflavor!=generic", True),
        ("arch = amd64", True),
    ],
)
def test_filter_matches_like_sstream_mirror(text: str, expected: bool) -> None:
    """Equality is exact, regex is unanchored search, a missing key is the empty string."""
    assert ItemFilter.parse(text).matches(FIELDS) is expected


def test_filter_parts_and_text_form() -> None:
    """A parsed filter exposes key, operator and value and prints back as written."""
    flt = ItemFilter.parse("os~(grub*|pxelinux)")
    assert (flt.key, flt.op, flt.value) == ("os", "~", "(grub*|pxelinux)")
    assert str(flt) == "os~(grub*|pxelinux)"
    assert flt == ItemFilter("os", "~", "(grub*|pxelinux)")


def test_value_may_contain_operator_characters() -> None:
    """Only the first operator splits; the rest belongs to the value."""
    flt = ItemFilter.parse("kparams=console=ttyS0 quiet")
    assert flt.value == "console=ttyS0 quiet"
    assert flt.matches({"kparams": "console=ttyS0 quiet"})


@pytest.mark.parametrize("text", ["arch", "=amd64", "arch>amd64", "", "a b=c"])
def test_text_outside_the_grammar_is_a_clear_value_error(text: str) -> None:
    """A filter that does not parse names itself and the accepted forms."""
    with pytest.raises(ValueError, match="expected key=value, key!=value, key~regex or key!~regex"):
        ItemFilter.parse(text)


def test_bad_regex_is_a_clear_value_error() -> None:
    """A regex that does not compile is reported with the filter text."""
    with pytest.raises(ValueError, match=r"bad filter 'release~\(noble': invalid regular"):
        ItemFilter.parse("release~(noble")


def test_unknown_operator_is_refused_when_built_directly() -> None:
    """Building a filter from parts checks the operator too."""
    with pytest.raises(ValueError, match="unknown operator"):
        ItemFilter("arch", ">", "x")  # type: ignore[arg-type]


def test_all_filters_must_match() -> None:
    """matches_all ANDs the filters; no filters accept everything."""
    filters = parse_filters(["arch=amd64", "release~(jammy|noble)"])
    assert matches_all(filters, FIELDS)
    assert not matches_all((*filters, ItemFilter.parse("os=centos")), FIELDS)
    assert matches_all((), {})
