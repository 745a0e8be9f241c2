"""The Save selection diff: ticks against selections → creates, updates and deletes."""

from __future__ import annotations

from region.db.sources import Selection
from region.ui.selection_diff import Wanted, diff_selections


def sel(
    sid: int, os: str, release: str, arches: tuple[str, ...], subarches: tuple[str, ...] = ("*",)
) -> Selection:
    return Selection(
        id=sid,
        boot_source_id=1,
        os=os,
        release=release,
        arches=arches,
        subarches=subarches,
        labels=("*",),
        created="",
        updated="",
    )


OFFERED = {
    ("ubuntu", "noble"): frozenset({"amd64", "arm64"}),
    ("ubuntu", "jammy"): frozenset({"amd64"}),
    ("centos", "8"): frozenset({"amd64"}),
}


def test_a_new_tick_creates_a_selection_with_star_subarches_and_labels() -> None:
    """Ticking a release with no selection creates one with the ticked arches and ``*`` kernels."""
    plan = diff_selections([], {("ubuntu", "jammy"): {"amd64"}}, OFFERED)
    assert plan.create == (Wanted(os="ubuntu", release="jammy", arches=("amd64",)),)
    assert plan.update == ()
    assert plan.delete == ()


def test_unticking_every_arch_deletes_the_selection() -> None:
    """A selected row with no tick left is deleted."""
    current = [sel(7, "ubuntu", "noble", ("amd64",))]
    plan = diff_selections(current, {}, OFFERED)
    assert [s.id for s in plan.delete] == [7]
    assert plan.create == ()
    assert plan.update == ()


def test_changed_arches_update_in_place_and_unchanged_rows_do_nothing() -> None:
    """Adding an arch updates the selection; a row ticked as before is left alone."""
    current = [sel(1, "ubuntu", "noble", ("amd64",)), sel(2, "centos", "8", ("amd64",))]
    ticks = {("ubuntu", "noble"): {"amd64", "arm64"}, ("centos", "8"): {"amd64"}}
    plan = diff_selections(current, ticks, OFFERED)
    assert plan.update == ((1, Wanted(os="ubuntu", release="noble", arches=("amd64", "arm64"))),)
    assert plan.create == ()
    assert plan.delete == ()


def test_star_arches_stay_star_while_everything_offered_is_ticked() -> None:
    """A ``*`` selection shown fully ticked is unchanged; un-ticking one arch makes it explicit."""
    current = [sel(3, "ubuntu", "noble", ("*",))]
    assert diff_selections(current, {("ubuntu", "noble"): {"amd64", "arm64"}}, OFFERED).empty
    plan = diff_selections(current, {("ubuntu", "noble"): {"amd64"}}, OFFERED)
    assert plan.update == ((3, Wanted(os="ubuntu", release="noble", arches=("amd64",))),)


def test_subarches_from_the_advanced_options_replace_the_selections() -> None:
    """Subarches typed in the advanced options are written; others keep the selection's."""
    current = [sel(4, "ubuntu", "noble", ("amd64",), ("ga-24.04",))]
    ticks = {("ubuntu", "noble"): {"amd64"}}
    assert diff_selections(current, ticks, OFFERED).empty
    plan = diff_selections(current, ticks, OFFERED, {("ubuntu", "noble"): ("hwe-24.04",)})
    assert plan.update[0][1].subarches == ("hwe-24.04",)


def test_wildcard_selections_are_not_rows_and_stay() -> None:
    """A selection for release ``*`` is not shown as a row, so no tick state deletes it."""
    current = [sel(5, "ubuntu", "*", ("amd64",))]
    assert diff_selections(current, {}, OFFERED).empty


def test_a_tick_for_a_release_not_offered_is_still_planned_for_validation() -> None:
    """Ticks outside the offered rows become creates, so the API's checks can refuse them."""
    plan = diff_selections([], {("ubuntu", "bogus"): {"amd64"}}, OFFERED)
    assert [(w.os, w.release) for w in plan.create] == [("ubuntu", "bogus")]
