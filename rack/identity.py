"""Who this rack is to its region, and which region key it trusts.

Kept in the data directory::

    rack.json             {"system_id", "credential", "region_fingerprint", "pinned_at"}
                          (mode 0600: the credential is a secret)
    region-keyring.gpg    the region's public keyring, pinned at first registration

The credential is the rack's own, issued by the region at its first
registration (or the first one after an upgrade); the rack sends it on every
call, so no other rack can re-register under its ``system_id``.

The region's key is pinned the first time a registration succeeds. A later
registration that offers another key is refused (``region_key_changed``): the
rack stops syncing until an operator runs ``bootsync-rackd --forget-region-key``
and restarts it, which pins whatever key the region offers next.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.errors import KeyringError, SignatureError
from common.ops.logging import get_logger
from common.rackproto import RegistrationReply
from common.storage.atomic import write_atomic
from common.storage.modes import PRIVATE_FILE_MODE, tighten_file
from common.trust.keyrings import Keyring, aload_keyring
from rack.files import dump_json, read_json

log = get_logger("rack.identity")

RACK_FILE = "rack.json"
KEYRING_FILE = "region-keyring.gpg"


class RegionKeyChangedError(SignatureError):
    """The region offers a key other than the one pinned at registration."""

    reason = "region_key_changed"

    def __init__(self, *, pinned: str, offered: str) -> None:
        self.pinned = pinned
        self.offered = offered
        super().__init__(
            f"region key changed: pinned {pinned}, region now offers {offered}; refusing to "
            "sync (run `bootsync-rackd --forget-region-key` and restart to trust the new key)"
        )


class NotRegisteredError(SignatureError):
    """No region key is pinned yet, so nothing the region serves can be verified."""

    reason = "not_registered"


@dataclass(frozen=True)
class PinnedRegion:
    """The region key this rack trusts."""

    fingerprint: str
    keyring: Keyring


class RackIdentity:
    """``rack.json`` and the pinned keyring of one data directory.

    :meth:`load` first, then :meth:`accept` each registration reply. All file
    access runs in worker threads.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.system_id: str | None = None
        self.credential: str | None = None  # the rack's own, issued by the region
        self.pinned: PinnedRegion | None = None
        self.key_changed: RegionKeyChangedError | None = None
        self._pinned_at: str | None = None

    async def load(self) -> None:
        """Read what an earlier run saved; a missing or damaged pin means "not pinned".

        A ``rack.json`` more open than 0640 is made 0600 first (logged).
        """
        await asyncio.to_thread(tighten_file, self.data_dir / RACK_FILE)
        saved = await asyncio.to_thread(read_json, self.data_dir / RACK_FILE)
        self.system_id = saved.get("system_id") if isinstance(saved.get("system_id"), str) else None
        credential = saved.get("credential")
        self.credential = credential if isinstance(credential, str) and credential else None
        fingerprint = saved.get("region_fingerprint")
        if not isinstance(fingerprint, str):
            return
        try:
            keyring = await aload_keyring(self.data_dir / KEYRING_FILE, name="pinned region key")
        except KeyringError as exc:
            log.warning("pinned_key_unreadable", error=str(exc))
            return
        if fingerprint in keyring.fingerprints:
            self.pinned = PinnedRegion(fingerprint=fingerprint, keyring=keyring)
            pinned_at = saved.get("pinned_at")
            self._pinned_at = pinned_at if isinstance(pinned_at, str) else None

    async def accept(self, reply: RegistrationReply) -> PinnedRegion:
        """Take the region's reply: remember the system id and credential, pin or check the key.

        A new system id drops the credential of the old one. Raises
        RegionKeyChangedError when a key is pinned and the reply offers another
        (``key_changed`` stays set until a matching reply), and KeyringError when
        the reply's keyring is unusable or lacks its fingerprint.
        """
        offered = reply.region_fingerprint.upper()
        kept = self.credential if self.system_id == reply.system_id else None
        credential = reply.credential or kept
        if (reply.system_id, credential) != (self.system_id, self.credential):
            self.system_id, self.credential = reply.system_id, credential
            await self._save()
            if reply.credential is not None:
                log.info("rack_credential_stored", system_id=self.system_id)
        if self.pinned is not None:
            if offered != self.pinned.fingerprint:
                self.key_changed = RegionKeyChangedError(
                    pinned=self.pinned.fingerprint, offered=offered
                )
                raise self.key_changed
            self.key_changed = None
            return self.pinned
        keyring = await aload_keyring(_decode_keyring(reply.region_keyring), name="region keyring")
        if offered not in keyring.fingerprints:
            raise KeyringError(
                f"the region's keyring does not hold its key {offered}", source="registration reply"
            )
        await asyncio.to_thread(write_atomic, self.data_dir / KEYRING_FILE, keyring.binary)
        self.pinned = PinnedRegion(fingerprint=offered, keyring=keyring)
        self._pinned_at = datetime.now(UTC).isoformat(timespec="seconds")
        await self._save()
        log.info("region_key_pinned", fingerprint=offered, system_id=reply.system_id)
        return self.pinned

    def require_pinned(self) -> PinnedRegion:
        """The pinned key; RegionKeyChangedError or NotRegisteredError if syncing must wait."""
        if self.key_changed is not None:
            raise self.key_changed
        if self.pinned is None:
            raise NotRegisteredError(
                "the rack has not registered with a region yet, so no region key is pinned"
            )
        return self.pinned

    async def _save(self) -> None:
        body: dict[str, Any] = {"system_id": self.system_id}
        if self.credential is not None:
            body["credential"] = self.credential
        if self.pinned is not None:
            body["region_fingerprint"] = self.pinned.fingerprint
            body["pinned_at"] = self._pinned_at
        await asyncio.to_thread(
            write_atomic, self.data_dir / RACK_FILE, dump_json(body), mode=PRIVATE_FILE_MODE
        )


def forget_region_key(data_dir: Path) -> str | None:
    """Clear the pinned region key (blocking; for the CLI); return the forgotten fingerprint.

    The system id and the rack's credential are kept, so the region still knows
    the rack after it re-registers. Returns None when no key was pinned.
    """
    saved = read_json(data_dir / RACK_FILE)
    fingerprint = saved.pop("region_fingerprint", None)
    saved.pop("pinned_at", None)
    (data_dir / KEYRING_FILE).unlink(missing_ok=True)
    if (data_dir / RACK_FILE).exists():
        write_atomic(data_dir / RACK_FILE, dump_json(saved), mode=PRIVATE_FILE_MODE)
    return fingerprint if isinstance(fingerprint, str) else None


def _decode_keyring(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyringError("region_keyring is not base64", source="registration reply") from exc
