"""The catalogue's pure parts: titles, entries, index dates and frozen-mirror warnings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from common.errors import ConnectError, UnknownKeyError
from region.images.catalogue import (
    catalogue_entry,
    error_message,
    frozen_warning,
    parse_updated,
    product_title,
)

NOW = datetime(2025, 7, 20, tzinfo=UTC)


def test_an_ubuntu_title_is_the_os_then_the_release_title() -> None:
    """Ubuntu products without os_title are titled ``Ubuntu <release_title>``."""
    assert product_title({"os": "ubuntu", "release_title": "24.04 LTS"}) == "Ubuntu 24.04 LTS"


def test_a_release_title_that_names_its_os_is_not_prefixed_twice() -> None:
    """CentOS streams say ``CentOS 8`` already."""
    assert product_title({"os": "centos", "release_title": "CentOS 8"}) == "CentOS 8"


def test_an_explicit_title_wins_and_bootloaders_have_none() -> None:
    """A product's own ``title`` is used as is; a bootloader has no release title."""
    assert product_title({"title": "Custom", "release_title": "x"}) == "Custom"
    assert product_title({"os": "grub-efi-signed", "bootloader-type": "uefi"}) == ""


def test_a_flavoured_kernel_gets_its_own_subarch_in_the_catalogue() -> None:
    """lowlatency on ga-22.04 is catalogued as ga-22.04-lowlatency, as MAAS names it."""
    entry = catalogue_entry(
        {
            "os": "ubuntu",
            "release": "jammy",
            "arch": "amd64",
            "subarch": "ga-22.04",
            "kflavor": "lowlatency",
            "label": "stable",
        }
    )
    assert (entry.subarch, entry.kflavor) == ("ga-22.04-lowlatency", "lowlatency")


def test_index_dates_are_read_as_rfc_2822_or_iso_and_unreadable_ones_are_none() -> None:
    """Both forms parse to aware datetimes; garbage gives None."""
    assert parse_updated("Fri, 18 Jul 2025 10:00:00 +0000") == datetime(2025, 7, 18, 10, tzinfo=UTC)
    assert parse_updated("2025-07-18T10:00:00") == datetime(2025, 7, 18, 10, tzinfo=UTC)
    assert parse_updated("soon") is None
    assert parse_updated(None) is None


def test_an_index_older_than_the_limit_gets_a_frozen_warning() -> None:
    """Two days old with a one-day limit: a warning naming the URL; a fresh index: none."""
    old = frozen_warning("http://m/", "Fri, 18 Jul 2025 00:00:00 +0000", timedelta(days=1), NOW)
    fresh = frozen_warning("http://m/", "Sun, 20 Jul 2025 00:00:00 +0000", timedelta(days=1), NOW)
    assert old is not None
    assert "http://m/" in old
    assert "frozen" in old
    assert fresh is None


def test_error_messages_follow_maas_wording_per_kind_of_failure() -> None:
    """A signature problem asks to verify connectivity; a network error states the cause."""
    signature = error_message("http://m/", UnknownKeyError("signed by key X", source="i"))
    network = error_message("http://m/", ConnectError("refused", url="http://m/i"))
    assert signature == (
        "Failed to import images from http://m/ (i: signed by key X). "
        "Verify network connectivity and try again."
    )
    assert network == "Failed to import images from http://m/: http://m/i: refused"
