"""A rack's list-boot-images status and the rack part of each image's status."""

from __future__ import annotations

from dataclasses import replace

import pytest

from common.rackproto import RackImage, RackState
from region.db.racks import RackRow
from region.rackhub.state import (
    RACK_SYNCED,
    RACK_SYNCING,
    RACK_WAITING,
    rack_status,
    summarize,
)

NOBLE = RackImage(name="ubuntu/noble", architecture="amd64", subarches=["ga-24.04", "generic"])
GRUB = RackImage(name="grub-efi-signed/uefi", architecture="amd64", subarches=["generic"])


def rack(
    system_id: str = "aaaaaa",
    *,
    state: RackState | None = "synced",
    snapshot_id: str | None = "s2",
    images: tuple[RackImage, ...] = (NOBLE,),
) -> RackRow:
    """A rack row as the registry returns it."""
    return RackRow(
        system_id=system_id,
        hostname=system_id,
        url="http://r:5248",
        registered="2026-01-01T00:00:00",
        last_seen="2026-01-01T00:00:00",
        state=state,
        snapshot_id=snapshot_id,
        images=images,
        last_sync=None,
        error=None,
        updated=None,
    )


class TestRackStatus:
    """``list_boot_images``'s status for one rack."""

    @pytest.mark.parametrize(
        ("row", "connected", "importing", "expected"),
        [
            (rack(), False, False, "unknown"),
            (rack(state=None, snapshot_id=None), True, False, "unknown"),
            (rack(), False, True, "unknown"),
            (rack(), True, True, "region-importing"),
            (rack(state="syncing", snapshot_id="s1"), True, False, "syncing"),
            (rack(), True, False, "synced"),
            (rack(state="failed"), True, False, "synced"),
            (rack(snapshot_id="s1"), True, False, "out-of-sync"),
            (rack(state="failed", snapshot_id="s1"), True, False, "out-of-sync"),
            (rack(state="idle", snapshot_id=None), True, False, "out-of-sync"),
        ],
    )
    def test_status_follows_connection_import_state_and_snapshot(
        self, row: RackRow, connected: bool, importing: bool, expected: str
    ) -> None:
        """Disconnected or silent is unknown; then region import, pulling, current snapshot."""
        assert (
            rack_status(
                row, connected=connected, current_snapshot_id="s2", region_importing=importing
            )
            == expected
        )


class TestSyncSummary:
    """The rack part of an image's status: Synced, Syncing to…, Waiting for… racks."""

    def test_with_no_racks_every_complete_image_is_synced(self) -> None:
        """Nothing registered (or nothing connected): the region's copy is all there is."""
        assert summarize([], "s2").image_status("ubuntu/noble", "amd64") == RACK_SYNCED
        lonely = summarize([rack()], "s2", connected=frozenset())
        assert lonely.racks == 0
        assert lonely.image_status("ubuntu/jammy", "amd64") == RACK_SYNCED

    def test_an_image_every_rack_serves_from_the_current_snapshot_is_synced(self) -> None:
        """Both racks list it and serve the current snapshot."""
        summary = summarize([rack("aaaaaa"), rack("bbbbbb", images=(NOBLE, GRUB))], "s2")
        assert summary.all_current
        assert summary.image_status("ubuntu/noble", "amd64") == RACK_SYNCED
        assert summary.image_status("ubuntu/noble", "amd64/ga-24.04") == RACK_SYNCED
        assert summary.image_status("grub-efi-signed/uefi", "amd64") == RACK_WAITING

    def test_a_subarch_the_rack_lacks_or_another_arch_is_not_on_the_racks(self) -> None:
        """``arch/subarch`` needs that subarch; arm64 is a different image row."""
        summary = summarize([rack()], "s2")
        assert summary.image_status("ubuntu/noble", "amd64/hwe-24.04") == RACK_WAITING
        assert summary.image_status("ubuntu/noble", "arm64") == RACK_WAITING

    def test_a_rack_on_an_older_snapshot_does_not_count_as_holding_anything(self) -> None:
        """Its list describes another snapshot's content, so the image is waiting."""
        summary = summarize([rack("aaaaaa"), rack("bbbbbb", snapshot_id="s1")], "s2")
        assert not summary.all_current
        assert summary.serving_current == 1
        assert summary.image_status("ubuntu/noble", "amd64") == RACK_WAITING

    def test_while_a_rack_pulls_missing_images_are_syncing(self) -> None:
        """A counted rack reporting ``syncing`` makes a rack import run."""
        pulling = rack("bbbbbb", state="syncing", snapshot_id="s1")
        summary = summarize([rack("aaaaaa"), pulling], "s2")
        assert summary.rack_import_running
        assert summary.image_status("ubuntu/noble", "amd64") == RACK_SYNCING

    def test_only_connected_racks_count(self) -> None:
        """A lagging rack that is not connected does not hold the image back."""
        racks = [rack("aaaaaa"), rack("bbbbbb", snapshot_id="s1")]
        summary = summarize(racks, "s2", connected={"aaaaaa"})
        assert summary.racks == 1
        assert summary.image_status("ubuntu/noble", "amd64") == RACK_SYNCED

    def test_the_caller_may_say_whether_a_rack_import_runs(self) -> None:
        """An explicit rack_import_running wins over the racks' reports."""
        lagging = [rack(snapshot_id="s1")]
        assert (
            summarize(lagging, "s2", rack_import_running=True).image_status("ubuntu/noble", "amd64")
            == RACK_SYNCING
        )
        pulling = [replace(rack(snapshot_id="s1"), state="syncing")]
        assert (
            summarize(pulling, "s2", rack_import_running=False).image_status(
                "ubuntu/noble", "amd64"
            )
            == RACK_WAITING
        )

    def test_a_rack_that_never_reported_holds_nothing(self) -> None:
        """Registered and connected but silent: images wait for it."""
        summary = summarize([rack(state=None, snapshot_id=None, images=())], None)
        assert summary.image_status("ubuntu/noble", "amd64") == RACK_WAITING
