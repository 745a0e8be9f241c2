"""The region ↔ rack protocol: paths, headers and message shapes both sides share.

All calls are HTTP on the region's port, opened by the rack (so it works through
NAT), and authenticated with the region's shared secret in
``Authorization: Bearer <secret>`` (``bootsync rack-secret`` prints it).

1. ``POST {REGISTER_PATH}`` with :class:`Registration` as JSON →
   :class:`RegistrationReply`. A rack keeps its ``system_id`` across restarts
   (sent back on re-registration). It pins the region's public key the first
   time and refuses to sync if a later reply carries another key (the operator
   must re-register the rack deliberately).
2. ``GET {EVENTS_PATH}`` (``{system_id}`` filled in): a server-sent-events
   stream the rack keeps open. The region sends ``event: snapshot`` (data:
   ``{"id": ...}``) when it publishes a new stream and ``event: import`` when an
   operator asks this rack (or all racks) to import; ``: keepalive`` comments
   every ``KEEPALIVE_S`` seconds. A rack reconnects with backoff.
3. ``POST {STATUS_PATH}`` with :class:`RackStatus` as JSON after every sync
   attempt and whenever its state changes.
4. The stream itself is the region's published SimpleStreams tree at
   ``/MAAS/images-stream/`` (anonymous, as in MAAS); the rack verifies
   ``streams/v1/index.sjson`` and the products file with the pinned key and every
   file's sha256.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

RACK_API = "/MAAS/rack/v1"
REGISTER_PATH = f"{RACK_API}/register"
EVENTS_PATH = RACK_API + "/racks/{system_id}/events"
STATUS_PATH = RACK_API + "/racks/{system_id}/status"
STREAM_PREFIX = "/MAAS/images-stream"
STREAM_INDEX = f"{STREAM_PREFIX}/streams/v1/index.sjson"
AUTH_SCHEME = "Bearer"
KEEPALIVE_S = 15.0

RackState = Literal["idle", "syncing", "synced", "failed"]
SYNC_STATES: tuple[RackState, ...] = ("idle", "syncing", "synced", "failed")


@dataclass(frozen=True)
class Registration:
    """What a rack says about itself when it (re-)registers."""

    hostname: str
    url: str  # where the rack serves /images/, e.g. http://10.0.0.5:5248
    system_id: str | None = None  # None on first registration


@dataclass(frozen=True)
class RegistrationReply:
    """The region's answer: the rack's id and the key that signs the region's stream."""

    system_id: str
    region_keyring: str  # base64 of the binary OpenPGP public keyring
    region_fingerprint: str
    stream_index: str = STREAM_INDEX


@dataclass(frozen=True)
class RackImage:
    """One image a rack holds, as MAAS's list-boot-images shows it."""

    name: str  # "ubuntu/noble", "grub-efi-signed/uefi"
    architecture: str  # "amd64"
    subarches: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RackStatus:
    """A rack's report after a sync attempt (or a state change)."""

    state: RackState
    snapshot_id: str | None  # the region snapshot id (the index ETag) the rack serves
    images: list[RackImage] = field(default_factory=list)
    last_sync: str | None = None  # ISO 8601 UTC of the last successful sync
    error: str | None = None  # why the last attempt failed, for operators


def to_json(message: Registration | RegistrationReply | RackStatus) -> dict[str, Any]:
    """A message as a JSON-ready dict."""
    return asdict(message)


def status_from_json(data: dict[str, Any]) -> RackStatus:
    """Parse a :class:`RackStatus`; ValueError names the bad field."""
    state = data.get("state")
    if state not in SYNC_STATES:
        raise ValueError(f"state: must be one of {', '.join(SYNC_STATES)}")
    images = data.get("images", [])
    if not isinstance(images, list):
        raise ValueError("images: must be a list")
    parsed = []
    for n, image in enumerate(images):
        if (
            not isinstance(image, dict)
            or not isinstance(image.get("name"), str)
            or not isinstance(image.get("architecture"), str)
        ):
            raise ValueError(f"images[{n}]: needs name and architecture strings")
        subarches = image.get("subarches", [])
        if not isinstance(subarches, list) or not all(isinstance(s, str) for s in subarches):
            raise ValueError(f"images[{n}].subarches: must be a list of strings")
        parsed.append(
            RackImage(
                name=image["name"], architecture=image["architecture"], subarches=list(subarches)
            )
        )
    for key in ("snapshot_id", "last_sync", "error"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"{key}: must be a string or null")
    return RackStatus(
        state=state,
        snapshot_id=data.get("snapshot_id"),
        images=parsed,
        last_sync=data.get("last_sync"),
        error=data.get("error"),
    )


def registration_from_json(data: dict[str, Any]) -> Registration:
    """Parse a :class:`Registration`; ValueError names the bad field."""
    hostname = data.get("hostname")
    if not isinstance(hostname, str) or not hostname.strip() or len(hostname) > 255:
        raise ValueError("hostname: must be a non-empty string of at most 255 characters")
    url = data.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("url: must be an http:// or https:// URL")
    system_id = data.get("system_id")
    if system_id is not None and not isinstance(system_id, str):
        raise ValueError("system_id: must be a string or null")
    return Registration(hostname=hostname.strip(), url=url, system_id=system_id or None)
