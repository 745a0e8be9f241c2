"""Drive a region with python-libmaas, unmodified; print what it saw as one JSON object.

Run by tests/integration/test_libmaas.py with the python of ``.venv-libmaas``
(libmaas and its dependencies stay out of the project's venv), as::

    python libmaas_driver.py API_URL API_KEY SOURCE_URL OTHER_SOURCE_URL KEYRING
    python libmaas_driver.py racks API_URL API_KEY

Uses only libmaas's synchronous API, as a script would. Any exception ends the
run with a traceback on stderr and exit status 1.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from typing import Any

from maas.client import connect  # type: ignore[import-not-found]
from maas.client.bones import CallError  # type: ignore[import-not-found]

UPLOAD = bytes(range(251)) * ((9 << 20) // 251)  # three 4 MiB chunks, the last short
IMPORT_WAIT_S = 90.0


def wait_idle(origin: Any) -> list[bool]:
    """Poll is_importing (no facade in libmaas 0.6.8) until false; the answers seen."""
    seen: list[bool] = []
    deadline = time.monotonic() + IMPORT_WAIT_S
    while time.monotonic() < deadline:
        seen.append(origin.BootResources._handler.is_importing())
        if seen[-1] is False:
            return seen
        time.sleep(0.2)
    raise TimeoutError(f"still importing after {IMPORT_WAIT_S} s")


def sets_of(resource: Any) -> dict[str, Any]:
    """A resource's sets as plain data, through libmaas's checked fields."""
    return {
        version: {
            "complete": s.complete,
            "label": s.label,
            "size": s.size,
            "files": {
                name: {
                    "filetype": f.filetype,
                    "sha256": f.sha256,
                    "size": f.size,
                    "complete": f.complete,
                }
                for name, f in s.files.items()
            },
        }
        for version, s in resource.sets.items()
    }


def sources_and_selections(
    client: Any, out: dict[str, Any], source_url: str, other_url: str, keyring: str
) -> tuple[Any, Any]:
    """Boot sources list/create/update and selections create/read/update."""
    origin = client._origin
    out["sources_before"] = [s.url for s in client.boot_sources.list()]
    source = client.boot_sources.create(source_url, keyring_filename=keyring)
    out["created_source"] = {
        "id": source.id,
        "url": source.url,
        "keyring_filename": source.keyring_filename,
        "created": source.created.isoformat(),
    }
    source.url = other_url
    source.save()
    out["updated_source_url"] = client.boot_sources.get(source.id).url
    created = origin.BootSourceSelections.create(source, "ubuntu", "noble", arches=["amd64"])
    out["created_selection"] = {
        "id": created.id,
        "os": created.os,
        "release": created.release,
        "arches": list(created.arches),
        "labels": list(created.labels),
    }
    out["selections"] = [[s.os, s.release] for s in origin.BootSourceSelections.read(source)]
    selection = origin.BootSourceSelection.read(source, created.id)
    selection.labels = ["stable"]
    selection.save()
    out["updated_selection_labels"] = list(
        origin.BootSourceSelection.read(source.id, created.id).labels
    )
    return source, selection


def imports_and_resources(client: Any, out: dict[str, Any]) -> None:
    """start_import, is_importing, boot resources list/get."""
    origin = client._origin
    started = client.boot_resources.start_import()
    out["start_import"] = started.decode() if isinstance(started, bytes) else started
    out["is_importing_seen"] = wait_idle(origin)
    listed = client.boot_resources.list()
    out["resources"] = [
        {"id": r.id, "type": r.type, "name": r.name, "architecture": r.architecture} for r in listed
    ]
    noble = next(r for r in listed if r.name == "ubuntu/noble")
    out["noble_sets"] = sets_of(client.boot_resources.get(noble.id))


def upload(client: Any, out: dict[str, Any]) -> Any:
    """A chunked upload with BootResources.create, then the same bytes again (dedup)."""
    progress: list[float] = []
    made = client.boot_resources.create(
        "custom/from-libmaas",
        "amd64/generic",
        io.BytesIO(UPLOAD),
        title="From libmaas",
        progress_callback=progress.append,
    )
    out["uploaded"] = {
        "id": made.id,
        "type": made.type,
        "name": made.name,
        "architecture": made.architecture,
        "sets": sets_of(made),
        "sha256": hashlib.sha256(UPLOAD).hexdigest(),
        "size": len(UPLOAD),
        "progress_calls": len(progress),
    }
    again_progress: list[float] = []
    again = client.boot_resources.create(
        "custom/again", "amd64/generic", io.BytesIO(UPLOAD), progress_callback=again_progress.append
    )
    out["deduplicated"] = {
        "id": again.id,
        "sets": sets_of(again),
        "progress_calls": len(again_progress),
    }
    return made


def rack_controllers(client: Any) -> list[dict[str, Any]]:
    """Every rack controller through libmaas's checked fields (each raises if malformed)."""
    return [
        {
            "system_id": rack.system_id,
            "hostname": rack.hostname,
            "fqdn": rack.fqdn,
            "architecture": rack.architecture,
            "cpus": rack.cpus,
            "memory": rack.memory,
            "osystem": rack.osystem,
            "distro_series": rack.distro_series,
            "power_state": rack.power_state.value,
            "power_type": rack.power_type,
            "zone": rack.zone.name,
            "domain": rack.domain.name,
            "node_type": rack.node_type.name,
            "ip_addresses": list(rack.ip_addresses),
            "interfaces": {
                i.name: {"mac_address": i.mac_address, "enabled": i.enabled, "type": i.type.value}
                for i in rack.interfaces
            },
        }
        for rack in client.rack_controllers.list()
    ]


def main(argv: list[str]) -> int:
    """Run every step; print the JSON results (``racks API_URL API_KEY``: rack controllers)."""
    if argv[0] == "racks":
        print(json.dumps({"racks": rack_controllers(connect(argv[1], apikey=argv[2]))}))
        return 0
    api_url, key, source_url, other_url, keyring = argv
    client = connect(api_url, apikey=key)
    out: dict[str, Any] = {}
    version = client.version.get()
    out["version"] = {
        "version": version.version,
        "version_info": list(version.version_info),
        "capabilities": sorted(version.capabilities),
    }
    out["whoami"] = client.users.whoami().username
    source, selection = sources_and_selections(client, out, source_url, other_url, keyring)
    imports_and_resources(client, out)
    made = upload(client, out)
    stopped = client.boot_resources.stop_import()
    out["stop_import"] = stopped.decode() if isinstance(stopped, bytes) else stopped
    try:  # noble became the commissioning release at the import: MAAS 3.4 refuses
        selection.delete()
        out["selection_delete"] = {"status": 204, "content": ""}
    except CallError as exc:
        out["selection_delete"] = {"status": exc.status, "content": exc.content.decode()}
    out["selections_after_delete"] = len(client._origin.BootSourceSelections.read(source))
    out["commissioning"] = client.maas.get_commissioning_distro_series()
    out["default_release"] = [client.maas.get_default_os(), client.maas.get_default_distro_series()]
    client.maas.set_name("libmaas-region")
    out["maas_name"] = client.maas.get_name()
    client.boot_resources.get(made.id).delete()
    out["resources_after_delete"] = sorted(r.name for r in client.boot_resources.list())
    source.delete()
    out["sources_after_delete"] = [s.url for s in client.boot_sources.list()]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
