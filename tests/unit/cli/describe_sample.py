"""A describe document shaped as MAAS sends it, for parser tests.

MAAS's shape: ``{doc, hash, resources: [{name, anon, auth}], handlers}``, each handler
``{name, doc, path, params, uri, actions}``.
"""

from __future__ import annotations

from typing import Any

API = "/MAAS/api/2.0"


def _action(name: str, method: str, op: str | None = None, doc: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "method": method,
        "op": op,
        "restful": op is None,
        "doc": doc or f"{name.replace('_', ' ').capitalize()}.",
    }


def _handler(
    name: str,
    path: str,
    params: list[str],
    actions: list[dict[str, Any]],
    host: str,
    *,
    doc: str = "",
) -> dict[str, Any]:
    return {
        "name": name,
        "doc": doc or f"Manage {name}.",
        "params": params,
        "path": f"{API}/{path}",
        "uri": f"http://{host}{API}/{path}",
        "actions": sorted(actions, key=lambda a: a["name"]),
    }


def describe(host: str = "127.0.0.1:5240") -> dict[str, Any]:
    """The document; ``uri`` values use ``host`` as MAAS builds them from the Host header."""
    source_params = (
        ":param url: The URL of the BootSource.\n"
        ":param keyring_filename: The path to the keyring file.\n"
        ":param keyring_data: The GPG keyring, as a file.\n"
    )
    selection_params = (
        ":param os: The OS.\n:param release: The release.\n"
        ":param arches: Architectures.\n:param subarches: Subarchitectures.\n"
        ":param labels: Labels.\n"
    )
    auth = [
        _handler(
            "BootSourcesHandler",
            "boot-sources/",
            [],
            [
                _action("create", "POST", doc="Create a boot source.\n\n" + source_params),
                _action("read", "GET", doc="List boot sources.\n\nGet a listing of boot sources."),
            ],
            host,
            doc="Manage the collection of boot sources.",
        ),
        _handler(
            "BootSourceHandler",
            "boot-sources/{id}/",
            ["id"],
            [
                _action("read", "GET"),
                _action("delete", "DELETE"),
                _action("update", "PUT", doc="Update a boot source.\n\n" + source_params),
            ],
            host,
        ),
        _handler(
            "BootSourceSelectionsHandler",
            "boot-sources/{boot_source_id}/selections/",
            ["boot_source_id"],
            [
                _action("read", "GET"),
                _action("create", "POST", doc="Create a selection.\n\n" + selection_params),
            ],
            host,
        ),
        _handler(
            "BootSourceSelectionHandler",
            "boot-sources/{boot_source_id}/selections/{id}/",
            ["boot_source_id", "id"],
            [
                _action("read", "GET"),
                _action("delete", "DELETE"),
                _action("update", "PUT", doc="Update a selection.\n\n" + selection_params),
            ],
            host,
        ),
        _handler(
            "BootResourcesHandler",
            "boot-resources/",
            [],
            [
                _action("read", "GET", doc="List boot resources.\n\n:param type: Type to show.\n"),
                _action(
                    "create",
                    "POST",
                    doc="Upload a boot resource.\n\n:param name: Name.\n"
                    ":param architecture: Architecture.\n:param sha256: Digest.\n"
                    ":param size: Size.\n:param content: The image.\n",
                ),
                _action("import", "POST", "import", "Import the boot resources."),
                _action("is_importing", "GET", "is_importing", "Are resources importing?"),
                _action("stop_import", "POST", "stop_import", "Stop the import."),
            ],
            host,
            doc="Manage the boot resources.",
        ),
        _handler(
            "BootResourceHandler",
            "boot-resources/{id}/",
            ["id"],
            [_action("read", "GET"), _action("delete", "DELETE")],
            host,
        ),
        _handler(
            "MaasHandler",
            "maas/",
            [],
            [
                _action(
                    "get_config", "GET", "get_config", "Get a config value.\n\n:param name: N.\n"
                ),
                _action(
                    "set_config",
                    "POST",
                    "set_config",
                    "Set a config value.\n\n:param name: N.\n:param value: V.\n",
                ),
            ],
            host,
        ),
        _handler(
            "UsersHandler", "users/", [], [_action("whoami", "GET", "whoami", "Who am I?")], host
        ),
        _handler(
            "RackControllersHandler",
            "rackcontrollers/",
            [],
            [
                _action("read", "GET"),
                _action("import_boot_images", "POST", "import_boot_images", "Import on all racks."),
            ],
            host,
        ),
        _handler(
            "RackControllerHandler",
            "rackcontrollers/{system_id}/",
            ["system_id"],
            [
                _action("read", "GET"),
                _action("import_boot_images", "POST", "import_boot_images", "Import on one rack."),
                _action("list_boot_images", "GET", "list_boot_images", "List its images."),
            ],
            host,
        ),
    ]
    resources: list[dict[str, Any]] = [{"name": h["name"], "anon": None, "auth": h} for h in auth]
    version = _handler("VersionHandler", "version/", [], [_action("read", "GET")], host)
    resources.append({"name": "VersionHandler", "anon": version, "auth": None})
    resources.sort(key=lambda r: r["name"])
    return {
        "doc": "MAAS API",
        "hash": "0" * 40,
        "resources": resources,
        "handlers": [version, *auth],
    }
