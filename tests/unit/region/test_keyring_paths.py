"""Well-known Ubuntu keyring paths stand for the shipped keyring on hosts that lack them."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from region.config import UBUNTU_KEYRING_PATHS, KeyringLocator, shipped_keyring

Events = list[MutableMapping[str, Any]]


def test_the_well_known_paths_are_ubuntus_and_the_maas_snaps() -> None:
    """Both paths MAAS's docs and seed commands name are well known."""
    assert set(UBUNTU_KEYRING_PATHS) == {
        "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg",
        "/snap/maas/current/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg",
    }


async def test_an_absent_well_known_path_is_the_shipped_keyring_logged_once(
    tmp_path: Path, log_events: Events
) -> None:
    """An absent well-known path resolves to the shipped keyring, with one event however often."""
    well_known = str(tmp_path / "ubuntu-cloudimage-keyring.gpg")
    locator = KeyringLocator(well_known=(well_known,))
    first = await locator.locate(well_known)
    second = await locator.locate(well_known)
    assert first == second == shipped_keyring()
    substituted = [e for e in log_events if e["event"] == "ubuntu_keyring_substituted"]
    assert len(substituted) == 1
    assert substituted[0]["keyring_filename"] == well_known
    assert substituted[0]["shipped"] == str(shipped_keyring())


async def test_a_present_well_known_path_and_any_other_path_are_used_as_given(
    tmp_path: Path, log_events: Events
) -> None:
    """A well-known path that exists is read itself; other paths never resolve elsewhere."""
    well_known = tmp_path / "ubuntu-cloudimage-keyring.gpg"
    well_known.write_bytes(shipped_keyring().read_bytes())
    other = tmp_path / "absent.gpg"
    locator = KeyringLocator(well_known=(str(well_known),))
    assert await locator.locate(str(well_known)) == well_known
    assert await locator.locate(str(other)) == other
    assert not [e for e in log_events if e["event"] == "ubuntu_keyring_substituted"]
