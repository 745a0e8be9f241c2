"""MAAS's node fields of a rack-controller object, filled with what the rack reported.

A MAAS rack controller carries some forty fields (``DISPLAYED_RACK_CONTROLLER_FIELDS``
in MAAS 3.4); python-libmaas reads several of them with checks that raise when
one is missing or of the wrong type (``RackController.cpus``, ``.memory``,
``.power_state``, ``.zone``). :func:`node_fields` gives every one: the rack's
own facts where it reported them at registration (architecture, CPUs,
memory, OS and release, interfaces and addresses, version), MAAS's defaults
for what a bootsync region does not manage (zone ``default``, domain ``maas``,
power type ``manual``, power state ``unknown``, no tags, no test results).
A rack older than host facts gets the same fields, empty or zero.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from common.rackproto import HostFacts, HostInterface
from region.api.http import API_ROOT
from region.db.racks import RackRow

NODE_TYPE_RACK = 2
NODE_STATUS_DEPLOYED = 6  # MAAS registers controllers as deployed nodes
SCRIPT_STATUS_UNKNOWN = -1
DEFAULT_DOMAIN = {
    "authoritative": True,
    "ttl": None,
    "id": 0,
    "resource_record_count": 0,
    "is_default": True,
    "name": "maas",
    "resource_uri": f"{API_ROOT}/domains/0/",
}
DEFAULT_ZONE = {
    "name": "default",
    "description": "",
    "id": 1,
    "resource_uri": f"{API_ROOT}/zones/default/",
}
UNKNOWN_HARDWARE = dict.fromkeys(
    (
        "system_vendor",
        "system_product",
        "system_version",
        "system_serial",
        "cpu_model",
        "mainboard_vendor",
        "mainboard_product",
        "mainboard_firmware_version",
        "mainboard_firmware_date",
    ),
    "Unknown",
)
TEST_STATUSES = (
    "commissioning_status",
    "testing_status",
    "cpu_test_status",
    "memory_test_status",
    "network_test_status",
    "storage_test_status",
    "other_test_status",
    "interface_test_status",
)


def node_fields(rack: RackRow, *, connected: bool) -> dict[str, Any]:
    """Every MAAS rack-controller field but ``resource_uri``, for ``rack``."""
    host = rack.host
    fields: dict[str, Any] = {
        "system_id": rack.system_id,
        "hostname": rack.hostname,
        "description": "",
        "hardware_uuid": None,
        "domain": dict(DEFAULT_DOMAIN),
        "fqdn": rack.hostname if "." in rack.hostname else f"{rack.hostname}.maas",
        "architecture": f"{host.architecture}/generic" if host and host.architecture else None,
        "cpu_count": host.cpu_count if host else 0,
        "cpu_speed": host.cpu_speed if host else 0,
        "memory": host.memory if host else 0,
        "swap_size": None,
        "osystem": host.osystem if host else "",
        "distro_series": host.distro_series if host else "",
        "power_type": "manual",
        "power_state": "unknown",
        "ip_addresses": ip_addresses(rack),
        "interface_set": interface_set(rack.system_id, host),
        "zone": dict(DEFAULT_ZONE),
        "pool": None,  # resource pools hold machines, not controllers
        "status": NODE_STATUS_DEPLOYED,
        "status_name": "Deployed",
        "status_action": None,
        "node_type": NODE_TYPE_RACK,
        "node_type_name": "Rack controller",
        "service_set": service_set(rack, connected=connected),
        "current_commissioning_result_id": None,
        "current_testing_result_id": None,
        "current_installation_result_id": None,
        "version": host.version if host else None,
        "hardware_info": dict(UNKNOWN_HARDWARE),
        "tag_names": [],
    }
    for name in TEST_STATUSES:
        fields[name] = SCRIPT_STATUS_UNKNOWN
        fields[f"{name}_name"] = "Unknown"
    return fields


def ip_addresses(rack: RackRow) -> list[str]:
    """The rack's reported addresses (link-local aside); else the host of its URL."""
    if rack.host is not None:
        found = [_address(a) for i in rack.host.interfaces for a in i.addresses if _routable(a)]
        if found:
            return found
    host = urlsplit(rack.url).hostname
    return [host] if host else []


def interface_set(system_id: str, host: HostFacts | None) -> list[dict[str, Any]]:
    """The rack's interfaces as MAAS renders them (ids by position, no VLAN or subnet known)."""
    if host is None:
        return []
    rendered = []
    link_id = 0
    for position, interface in enumerate(host.interfaces, start=1):
        links = []
        for address in interface.addresses:
            link_id += 1
            links.append(
                {"id": link_id, "mode": "static", "ip_address": _address(address), "subnet": None}
            )
        rendered.append(_interface(system_id, position, interface, links))
    return rendered


def _interface(
    system_id: str, id_: int, interface: HostInterface, links: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": id_,
        "name": interface.name,
        "type": interface.type,
        "mac_address": interface.mac_address,
        "enabled": interface.enabled,
        "effective_mtu": interface.mtu,
        "links": links,
        "system_id": system_id,
        "tags": [],
        "params": "",
        "parents": [],
        "children": [],
        "vlan": None,
        "discovered": None,
        "product": None,
        "vendor": None,
        "firmware_version": None,
        "link_connected": interface.enabled,
        "interface_speed": 0,
        "link_speed": 0,
        "resource_uri": f"{API_ROOT}/nodes/{system_id}/interfaces/{id_}/",
    }


def service_set(rack: RackRow, *, connected: bool) -> list[dict[str, str]]:
    """MAAS's service list: ``rackd`` (the link to this region), ``http`` (the images it serves)."""
    if rack.state is None:
        http, info = "unknown", ""
    elif rack.state == "failed":
        http, info = "degraded", rack.error or ""
    else:
        http, info = "running", ""
    return [
        {"name": "rackd", "status": "running" if connected else "dead", "status_info": ""},
        {"name": "http", "status": http, "status_info": info},
    ]


def _address(text: str) -> str:
    return str(ipaddress.ip_interface(text).ip)


def _routable(text: str) -> bool:
    ip = ipaddress.ip_interface(text).ip
    return not (ip.is_link_local or ip.is_loopback)
