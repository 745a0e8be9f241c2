"""The region ↔ rack protocol: paths, headers and message shapes both sides share.

All calls are HTTP on the region's port, opened by the rack (so it works through
NAT), and authenticated with the region's shared secret in
``Authorization: Bearer <secret>`` (``bootsync rack-secret`` prints it).

1. ``POST {REGISTER_PATH}`` with :class:`Registration` as JSON →
   :class:`RegistrationReply`. The registration carries the rack's
   :class:`HostFacts` (architecture, CPUs, memory, OS, interfaces, version),
   which the region shows in the rack-controller object; a rack that sends
   none (an older one) is still accepted. A rack keeps its ``system_id``
   across restarts (sent back on re-registration). It pins the region's public
   key the first time and refuses to sync if a later reply carries another key
   (the operator must re-register the rack deliberately).

   The first registration also issues the rack its own credential (the reply's
   ``credential``; a rack registered before credentials existed gets one at its
   next registration). The rack keeps it private and sends it in
   ``{CREDENTIAL_HEADER}`` on every later call: re-registering under its
   ``system_id``, status reports and the event stream are refused (403) without
   it, so the shared secret alone does not let one rack pass for another.
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

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

RACK_API = "/MAAS/rack/v1"
REGISTER_PATH = f"{RACK_API}/register"
EVENTS_PATH = RACK_API + "/racks/{system_id}/events"
STATUS_PATH = RACK_API + "/racks/{system_id}/status"
STREAM_PREFIX = "/MAAS/images-stream"
STREAM_INDEX = f"{STREAM_PREFIX}/streams/v1/index.sjson"
AUTH_SCHEME = "Bearer"
CREDENTIAL_HEADER = "X-Bootsync-Rack-Credential"
KEEPALIVE_S = 15.0

RackState = Literal["idle", "syncing", "synced", "failed"]
SYNC_STATES: tuple[RackState, ...] = ("idle", "syncing", "synced", "failed")


@dataclass(frozen=True)
class HostInterface:
    """One network interface of the rack's host (loopback excluded)."""

    name: str  # "eth0"
    mac_address: str  # "52:54:00:12:34:56"; "" when the interface has none
    mtu: int = 1500
    enabled: bool = True  # administratively up
    type: str = "physical"  # MAAS's interface types: physical, bond, bridge, vlan
    addresses: list[str] = field(default_factory=list)  # "10.0.0.5/24", "fd00::5/64"


@dataclass(frozen=True)
class HostFacts:
    """What a rack reports about its host, as MAAS shows it for a rack controller."""

    architecture: str  # Debian naming: amd64, arm64, ppc64el, s390x, ...
    cpu_count: int
    cpu_speed: int  # MHz; 0 when the host does not say
    memory: int  # MiB
    osystem: str  # /etc/os-release ID: "ubuntu"
    distro_series: str  # /etc/os-release VERSION_CODENAME: "noble"
    version: str  # the rack's bootsync version
    interfaces: list[HostInterface] = field(default_factory=list)


@dataclass(frozen=True)
class Registration:
    """What a rack says about itself when it (re-)registers."""

    hostname: str
    url: str  # where the rack serves /images/, e.g. http://10.0.0.5:5248
    system_id: str | None = None  # None on first registration
    host: HostFacts | None = None  # None from racks older than host facts


@dataclass(frozen=True)
class RegistrationReply:
    """The region's answer: the rack's id and the key that signs the region's stream."""

    system_id: str
    region_keyring: str  # base64 of the binary OpenPGP public keyring
    region_fingerprint: str
    stream_index: str = STREAM_INDEX
    credential: str | None = None  # the rack's own, when the region issues it (see above)


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


def to_json(
    message: Registration | RegistrationReply | RackStatus | HostFacts,
) -> dict[str, Any]:
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
    host = data.get("host")
    return Registration(
        hostname=hostname.strip(),
        url=url,
        system_id=system_id or None,
        host=None if host is None else host_from_json(host),
    )


def host_from_json(data: Any) -> HostFacts:
    """Parse :class:`HostFacts`; ValueError names the bad field (``host.memory: ...``)."""
    if not isinstance(data, dict):
        raise ValueError("host: must be an object")
    interfaces = data.get("interfaces", [])
    if not isinstance(interfaces, list) or len(interfaces) > MAX_INTERFACES:
        raise ValueError(f"host.interfaces: must be a list of at most {MAX_INTERFACES} objects")
    return HostFacts(
        architecture=_text(data, "architecture", "host"),
        cpu_count=_count(data, "cpu_count", "host"),
        cpu_speed=_count(data, "cpu_speed", "host"),
        memory=_count(data, "memory", "host"),
        osystem=_text(data, "osystem", "host"),
        distro_series=_text(data, "distro_series", "host"),
        version=_text(data, "version", "host"),
        interfaces=[_interface(i, f"host.interfaces[{n}]") for n, i in enumerate(interfaces)],
    )


MAX_INTERFACES = 256
MAX_ADDRESSES = 64
MAX_FACT_LENGTH = 255
MAX_FACT_NUMBER = 1 << 53


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or len(value) > MAX_FACT_LENGTH:
        raise ValueError(f"{where}.{key}: must be a string of at most {MAX_FACT_LENGTH} characters")
    return value


def _count(data: dict[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_FACT_NUMBER:
        raise ValueError(f"{where}.{key}: must be a whole number >= 0")
    return value


def _interface(data: Any, where: str) -> HostInterface:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be an object")
    addresses = data.get("addresses", [])
    if (
        not isinstance(addresses, list)
        or len(addresses) > MAX_ADDRESSES
        or not all(isinstance(a, str) and _is_address(a) for a in addresses)
    ):
        raise ValueError(
            f"{where}.addresses: must be a list of at most {MAX_ADDRESSES} addresses "
            "(10.0.0.5/24, fd00::5/64)"
        )
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}.enabled: must be true or false")
    return HostInterface(
        name=_text(data, "name", where),
        mac_address=_text(data, "mac_address", where),
        mtu=_count(data, "mtu", where) if "mtu" in data else 1500,
        enabled=enabled,
        type=_text(data, "type", where) if "type" in data else "physical",
        addresses=list(addresses),
    )


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        return False
    return True
