"""The rack pins the region's key at first registration and refuses another until told."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from common.errors import KeyringError
from common.rackproto import RegistrationReply
from rack.identity import (
    KEYRING_FILE,
    RACK_FILE,
    NotRegisteredError,
    RackIdentity,
    RegionKeyChangedError,
    forget_region_key,
)
from rack.main import main
from tests.fakes.gpg import ThrowawayKey, export_public


def reply(key: ThrowawayKey, system_id: str = "rack-1") -> RegistrationReply:
    """The region's answer offering ``key``."""
    return RegistrationReply(
        system_id=system_id,
        region_fingerprint=key.fingerprint,
        region_keyring=base64.b64encode(export_public(key)).decode(),
    )


async def test_the_first_reply_pins_the_key_and_a_restart_remembers_it(
    tmp_path: Path, gpg_signer: ThrowawayKey
) -> None:
    """rack.json and region-keyring.gpg survive a restart; the system id is kept."""
    identity = RackIdentity(tmp_path)
    await identity.load()
    with pytest.raises(NotRegisteredError):
        identity.require_pinned()
    pinned = await identity.accept(reply(gpg_signer))
    assert pinned.fingerprint == gpg_signer.fingerprint
    saved = json.loads((tmp_path / RACK_FILE).read_text())
    assert saved["system_id"] == "rack-1"
    assert saved["region_fingerprint"] == gpg_signer.fingerprint
    assert (tmp_path / KEYRING_FILE).is_file()

    again = RackIdentity(tmp_path)
    await again.load()
    assert again.system_id == "rack-1"
    assert again.require_pinned().fingerprint == gpg_signer.fingerprint
    assert again.require_pinned().keyring.binary == pinned.keyring.binary


async def test_another_key_is_refused_and_blocks_syncing_until_the_same_key_returns(
    tmp_path: Path, gpg_signer: ThrowawayKey, gpg_stranger: ThrowawayKey
) -> None:
    """A changed key raises and sticks; the pinned key coming back clears it."""
    identity = RackIdentity(tmp_path)
    await identity.accept(reply(gpg_signer))
    with pytest.raises(RegionKeyChangedError) as exc:
        await identity.accept(reply(gpg_stranger))
    assert exc.value.pinned == gpg_signer.fingerprint
    assert exc.value.offered == gpg_stranger.fingerprint
    assert "--forget-region-key" in str(exc.value)
    with pytest.raises(RegionKeyChangedError):
        identity.require_pinned()
    await identity.accept(reply(gpg_signer))
    assert identity.require_pinned().fingerprint == gpg_signer.fingerprint


async def test_forgetting_the_key_keeps_the_system_id_and_lets_a_new_key_be_pinned(
    tmp_path: Path, gpg_signer: ThrowawayKey, gpg_stranger: ThrowawayKey
) -> None:
    """--forget-region-key clears the pin only; the next registration pins the new key."""
    identity = RackIdentity(tmp_path)
    await identity.accept(reply(gpg_signer))
    assert await asyncio.to_thread(forget_region_key, tmp_path) == gpg_signer.fingerprint
    assert not (tmp_path / KEYRING_FILE).exists()
    fresh = RackIdentity(tmp_path)
    await fresh.load()
    assert fresh.system_id == "rack-1"
    assert fresh.pinned is None
    assert (await fresh.accept(reply(gpg_stranger))).fingerprint == gpg_stranger.fingerprint
    assert await asyncio.to_thread(forget_region_key, tmp_path / "empty") is None


async def test_the_forget_command_clears_the_pin_of_a_data_dir(
    tmp_path: Path, gpg_signer: ThrowawayKey, capsys: pytest.CaptureFixture[str]
) -> None:
    """bootsync-rackd --forget-region-key --data-dir DIR prints what it forgot and exits 0."""
    identity = RackIdentity(tmp_path)
    await identity.accept(reply(gpg_signer))
    assert await asyncio.to_thread(main, ["--forget-region-key", "--data-dir", str(tmp_path)]) == 0
    assert f"forgot region key {gpg_signer.fingerprint}" in capsys.readouterr().out
    assert not (tmp_path / KEYRING_FILE).exists()


async def test_a_reply_whose_keyring_lacks_its_fingerprint_pins_nothing(
    tmp_path: Path, gpg_signer: ThrowawayKey, gpg_stranger: ThrowawayKey
) -> None:
    """The offered fingerprint must be a key of the offered keyring; base64 must be valid."""
    identity = RackIdentity(tmp_path)
    mixed = RegistrationReply(
        system_id="rack-1",
        region_fingerprint=gpg_stranger.fingerprint,
        region_keyring=reply(gpg_signer).region_keyring,
    )
    with pytest.raises(KeyringError, match="does not hold its key"):
        await identity.accept(mixed)
    with pytest.raises(KeyringError, match="not base64"):
        await identity.accept(
            RegistrationReply(
                system_id="rack-1", region_keyring="%%%", region_fingerprint=gpg_signer.fingerprint
            )
        )
    assert identity.pinned is None
    assert not (tmp_path / KEYRING_FILE).exists()


async def test_a_damaged_pinned_keyring_means_not_pinned(
    tmp_path: Path, gpg_signer: ThrowawayKey
) -> None:
    """An unreadable keyring file is logged and treated as no pin, never as trust."""
    identity = RackIdentity(tmp_path)
    await identity.accept(reply(gpg_signer))
    (tmp_path / KEYRING_FILE).write_bytes(b"garbage")
    again = RackIdentity(tmp_path)
    await again.load()
    assert again.system_id == "rack-1"
    assert again.pinned is None
