"""Per-image status strings and progress, as MAAS's images page words them."""

from __future__ import annotations

import pytest

from region.images.status import QUEUED, SYNCED, downloading, image_status, progress


def test_progress_is_bytes_held_over_size_not_maas_inverted_value() -> None:
    """A quarter held is 25 %, not 400 % (MAAS 3.4 divided the other way)."""
    assert progress(25, 100) == 25.0


def test_progress_of_nothing_to_hold_is_zero() -> None:
    """An empty set has 0 % progress instead of a division by zero."""
    assert progress(0, 0) == 0.0


@pytest.mark.parametrize(
    ("percent", "text"),
    [
        (7.0, "Downloading   7%"),
        (42.4, "Downloading  42%"),
        (99.6, "Downloading 100%"),
    ],
)
def test_downloading_right_aligns_the_number_in_three_characters(percent: float, text: str) -> None:
    """The number is printf ``%3.0f``: right-aligned, rounded."""
    assert downloading(percent) == text


def test_an_image_without_a_set_is_queued() -> None:
    """No set yet: Queued for download."""
    assert image_status(has_set=False, complete=False, done=0, total=0) == QUEUED


def test_an_incomplete_set_with_no_bytes_is_queued() -> None:
    """A set whose files have no byte yet: still Queued for download."""
    assert image_status(has_set=True, complete=False, done=0, total=100) == QUEUED


def test_an_incomplete_set_with_bytes_is_downloading() -> None:
    """Some bytes held: Downloading with the percentage."""
    assert image_status(has_set=True, complete=False, done=30, total=200) == "Downloading  15%"


def test_a_complete_set_is_synced() -> None:
    """Every file held: Synced."""
    assert image_status(has_set=True, complete=True, done=200, total=200) == SYNCED
