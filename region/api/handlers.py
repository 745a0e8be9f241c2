"""Every MAAS handler this region serves: the registry describe/ is built from.

To add an action: route its (method, op) in the module that handles it
(``region.api.http.dispatch``) and add an :class:`Action` to its handler here,
with a :class:`Param` for every request parameter it reads (URI placeholders
are positional and not listed). tests/integration/region/test_describe.py fails
while the routes and this registry disagree. Handler names are MAAS's class
names: clients derive commands (maas CLI) and attributes (python-libmaas) from them.
"""

from __future__ import annotations

from region.api.registry import Action, HandlerSpec, Param

_KEYRING = (
    Param(
        "keyring_filename",
        "The path to a keyring file on the region to verify the source's signatures with.",
    ),
    Param(
        "keyring_data",
        "The GPG keyring to verify the source's signatures with: base64, "
        "or the file itself (keyring_data@=FILE).",
    ),
)
_SELECTION = (
    Param(
        "arches",
        "An architecture to import (amd64, arm64, ...); repeat for several, '*' for all.",
        type="List",
    ),
    Param(
        "subarches", "A subarchitecture to import; repeat for several, '*' for all.", type="List"
    ),
    Param(
        "labels",
        "A label to import (stable, candidate, ...); repeat for several, '*' for all.",
        type="List",
    ),
)
_UPLOAD = (
    Param(
        "name",
        "The image's name: a bare name (or custom/NAME) for a custom image, "
        "or OS/RELEASE for a supported operating system.",
        required=True,
    ),
    Param("architecture", "ARCH/SUBARCH, e.g. amd64/generic.", required=True),
    Param("title", "A title shown for the image."),
    Param(
        "filetype",
        "tgz (default), tbz, txz, ddtgz, ddtbz, ddtxz, ddtar, ddbz2, ddgz, ddxz or ddraw.",
    ),
    Param("base_image", "OS/RELEASE a custom image is built on (ubuntu, centos or rhel)."),
    Param("content", "The image file (content@=FILE) sent in this request.", type="File"),
    Param(
        "sha256",
        "The image's sha256 when it is uploaded afterwards with PUT to the file's upload_uri.",
    ),
    Param("size", "The image's size in bytes, with sha256.", type="Int"),
    Param(
        "keep_old", "true keeps the previously uploaded versions (default false).", type="Boolean"
    ),
)

HANDLERS: tuple[HandlerSpec, ...] = (
    HandlerSpec(
        "BootSourcesHandler",
        "boot-sources/",
        "Manage the collection of boot sources.",
        (
            Action("GET", None, "List boot sources.", details="Get a listing of boot sources."),
            Action(
                "POST",
                None,
                "Create a boot source.",
                (
                    Param(
                        "url", "The URL of the boot source (a SimpleStreams mirror).", required=True
                    ),
                    *_KEYRING,
                ),
                details="Exactly one of keyring_filename and keyring_data must be given.",
            ),
        ),
    ),
    HandlerSpec(
        "BootSourceHandler",
        "boot-sources/{id}/",
        "Manage a boot source.",
        (
            Action(
                "GET", None, "Read a boot source.", details="Get the boot source with the given id."
            ),
            Action(
                "PUT",
                None,
                "Update a boot source.",
                (Param("url", "The URL of the boot source."), *_KEYRING),
                details="Fields not given keep their values.",
            ),
            Action(
                "DELETE",
                None,
                "Delete a boot source.",
                details="Its selections and catalogue go with it.",
            ),
            Action(
                "GET",
                "available_images",
                "List what a boot source offers (bootsync).",
                details="Its catalogue, and the last error or warnings reading it.",
            ),
        ),
    ),
    HandlerSpec(
        "BootSourceSelectionsHandler",
        "boot-sources/{boot_source_id}/selections/",
        "Manage the collection of boot source selections.",
        (
            Action(
                "GET",
                None,
                "List boot source selections.",
                details="Get the selections of the given boot source.",
            ),
            Action(
                "POST",
                None,
                "Create a boot source selection.",
                (
                    Param("os", "The operating system to import, e.g. ubuntu.", required=True),
                    Param("release", "The release to import, e.g. noble.", required=True),
                    *_SELECTION,
                ),
            ),
        ),
    ),
    HandlerSpec(
        "BootSourceSelectionHandler",
        "boot-sources/{boot_source_id}/selections/{id}/",
        "Manage a boot source selection.",
        (
            Action("GET", None, "Read a boot source selection."),
            Action(
                "PUT",
                None,
                "Update a boot source selection.",
                (
                    Param("os", "The operating system to import."),
                    Param("release", "The release to import."),
                    *_SELECTION,
                ),
                details="Fields not given keep their values.",
            ),
            Action(
                "DELETE",
                None,
                "Delete a boot source selection.",
                details="Its images are removed by the next import.",
            ),
        ),
    ),
    HandlerSpec(
        "BootResourcesHandler",
        "boot-resources/",
        "Manage the boot resources.",
        (
            Action(
                "GET",
                None,
                "List boot resources.",
                (Param("type", "synced, generated, uploaded or all (default)."),),
            ),
            Action(
                "POST",
                None,
                "Upload a boot resource.",
                _UPLOAD,
                details="Send content@=FILE, or sha256 and size and then PUT the bytes to "
                "the upload_uri of the file in the answer.",
            ),
            Action(
                "POST",
                "import",
                "Import the boot resources.",
                (
                    Param(
                        "force",
                        "true accepts an upstream index older than the last one "
                        "imported (bootsync).",
                        type="Boolean",
                    ),
                ),
                details="The import runs in the background.",
            ),
            Action("GET", "is_importing", "Tell whether the region is importing boot resources."),
            Action("POST", "stop_import", "Stop importing boot resources."),
        ),
    ),
    HandlerSpec(
        "BootResourceHandler",
        "boot-resources/{id}/",
        "Manage a boot resource.",
        (
            Action(
                "GET",
                None,
                "Read a boot resource.",
                details="The resource with its sets and files.",
            ),
            Action("DELETE", None, "Delete a boot resource."),
        ),
    ),
    HandlerSpec(
        "BootResourceFileUploadHandler",
        "boot-resources/{id}/upload/{file_id}/",
        "Upload a boot resource file.",
        (
            Action(
                "PUT",
                None,
                "Append raw bytes to an uploaded file.",
                details="The body is the next chunk (application/octet-stream).",
            ),
        ),
        hidden=True,
    ),
    HandlerSpec(
        "MAASHandler",
        "maas/",
        "Manage the MAAS server.",
        (
            Action(
                "GET",
                "get_config",
                "Get a configuration value.",
                (Param("name", "The name of the configuration item.", required=True),),
            ),
            Action(
                "POST",
                "set_config",
                "Set a configuration value.",
                (
                    Param("name", "The name of the configuration item.", required=True),
                    Param("value", "The value to set.", required=True),
                ),
            ),
        ),
    ),
    HandlerSpec(
        "UsersHandler",
        "users/",
        "Manage the user accounts.",
        (Action("GET", "whoami", "Show the user the API key belongs to."),),
    ),
    HandlerSpec(
        "RackControllersHandler",
        "rackcontrollers/",
        "Manage the collection of rack controllers.",
        (
            Action("GET", None, "List rack controllers."),
            Action("POST", "import_boot_images", "Import the boot images on all rack controllers."),
        ),
    ),
    HandlerSpec(
        "RackControllerHandler",
        "rackcontrollers/{system_id}/",
        "Manage a rack controller.",
        (
            Action("GET", None, "Read a rack controller."),
            Action("GET", "list_boot_images", "List the boot images on a rack controller."),
            Action("POST", "import_boot_images", "Import the boot images on a rack controller."),
        ),
    ),
    HandlerSpec(
        "VersionHandler",
        "version/",
        "Information about this server.",
        (Action("GET", None, "Read the version and capabilities of the server."),),
        anon=True,
    ),
)
