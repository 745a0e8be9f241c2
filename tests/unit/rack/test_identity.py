"""The rack pins the region's key at first registration and refuses another until told."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

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


def reply(
    key: ThrowawayKey, system_id: str = "rack-1", credential: str | None = None
) -> RegistrationReply:
    """The region's answer offering ``key`` (and issuing ``credential``)."""
    return RegistrationReply(
        system_id=system_id,
        region_fingerprint=key.fingerprint,
        region_keyring=base64.b64encode(export_public(key)).decode(),
        credential=credential,
    )


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The default umask, under which new files would be 0644."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


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


@pytest.mark.usefixtures("umask_022")
async def test_the_issued_credential_is_kept_0600_across_restarts_and_re_registrations(
    tmp_path: Path, gpg_signer: ThrowawayKey
) -> None:
    """rack.json holds the region's credential at mode 0600 whatever the umask; a reply
    without one keeps it, a restart reads it back, --forget-region-key keeps it."""
    identity = RackIdentity(tmp_path)
    await identity.load()
    await identity.accept(reply(gpg_signer, credential="c-1"))
    assert identity.credential == "c-1"
    assert json.loads((tmp_path / RACK_FILE).read_text())["credential"] == "c-1"
    assert mode(tmp_path / RACK_FILE) == 0o600
    await identity.accept(reply(gpg_signer))  # re-registered with it: nothing new issued
    again = RackIdentity(tmp_path)
    await again.load()
    assert (again.system_id, again.credential) == ("rack-1", "c-1")
    await asyncio.to_thread(forget_region_key, tmp_path)
    assert json.loads((tmp_path / RACK_FILE).read_text())["credential"] == "c-1"
    assert mode(tmp_path / RACK_FILE) == 0o600


async def test_a_new_system_id_replaces_the_credential_of_the_old_one(
    tmp_path: Path, gpg_signer: ThrowawayKey
) -> None:
    """The region gave the rack a new id (it forgot the old one): the old credential goes."""
    identity = RackIdentity(tmp_path)
    await identity.accept(reply(gpg_signer, credential="c-1"))
    await identity.accept(reply(gpg_signer, system_id="rack-2"))
    assert (identity.system_id, identity.credential) == ("rack-2", None)
    await identity.accept(reply(gpg_signer, system_id="rack-3", credential="c-3"))
    again = RackIdentity(tmp_path)
    await again.load()
    assert (again.system_id, again.credential) == ("rack-3", "c-3")


async def test_a_rack_file_others_can_read_is_made_0600_at_load(
    tmp_path: Path, log_events: list[MutableMapping[str, Any]]
) -> None:
    """A rack.json left 0644 by an older version is tightened at start, with an event."""
    (tmp_path / RACK_FILE).write_text(json.dumps({"system_id": "rack-1", "credential": "c-1"}))
    (tmp_path / RACK_FILE).chmod(0o644)
    identity = RackIdentity(tmp_path)
    await identity.load()
    assert identity.credential == "c-1"
    assert mode(tmp_path / RACK_FILE) == 0o600
    (event,) = [e for e in log_events if e["event"] == "data_dir_permissions_tightened"]
    assert (event["path"], event["was"], event["now"]) == (
        str(tmp_path / RACK_FILE),
        "0644",
        "0600",
    )
