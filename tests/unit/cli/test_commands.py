"""The maas CLI grammar built from a describe document."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.cli.maascli_commands import (
    Command,
    HelpRequested,
    UsageError,
    action_command_name,
    build_commands,
    handler_command_name,
    parse_invocation,
    split_doc,
)
from region.api.handlers import HANDLERS
from region.api.registry import describe_document
from tests.unit.cli.describe_sample import describe

PROG = "bootsync admin"


@pytest.fixture
def commands() -> dict[str, Command]:
    return build_commands(describe(), anonymous=False)


@pytest.mark.parametrize(
    ("handler", "command"),
    [
        ("BootSourcesHandler", "boot-sources"),
        ("BootSourceHandler", "boot-source"),
        ("BootSourceSelectionsHandler", "boot-source-selections"),
        ("BootSourceSelectionHandler", "boot-source-selection"),
        ("BootResourcesHandler", "boot-resources"),
        ("BootResourceHandler", "boot-resource"),
        ("RackControllersHandler", "rack-controllers"),
        ("MaasHandler", "maas"),
        ("VersionHandler", "version"),
        # maascli's rule keeps a capital run with the word it starts: MAAS's own
        # IPAddressesHandler is ``ipaddresses``, and a handler named MAASHandler
        # would be ``maashandler`` (why the region must call it MaasHandler).
        ("MAASHandler", "maashandler"),
        ("IPAddressesHandler", "ipaddresses"),
        ("VLANsHandler", "vlans"),
        ("DNSResourceRecordsHandler", "dnsresource-records"),
        ("AnonMaasHandler", "anon-maas"),
    ],
)
def test_handler_class_names_become_maas_cli_command_names(handler: str, command: str) -> None:
    """Handler class names become command names by maascli's exact handler_command_name rule."""
    assert handler_command_name(handler) == command


@pytest.mark.parametrize(
    ("name", "cli"),
    [
        ("read", "read"),
        ("is_importing", "is-importing"),
        ("stop_import", "stop-import"),
        ("import_boot_images", "import-boot-images"),
        ("set_config", "set-config"),
    ],
)
def test_action_names_use_dashes(name: str, cli: str) -> None:
    """Underscores in action names become dashes, as in the maas CLI."""
    assert action_command_name(name) == cli


def test_the_tree_has_every_authenticated_handler_and_the_anonymous_ones(
    commands: dict[str, Command],
) -> None:
    """With a key, auth handlers are used, and anon-only handlers are still reachable."""
    assert set(commands) == {
        "boot-sources",
        "boot-source",
        "boot-source-selections",
        "boot-source-selection",
        "boot-resources",
        "boot-resource",
        "maas",
        "users",
        "rack-controllers",
        "rack-controller",
        "version",
    }
    resources = commands["boot-resources"]
    assert list(resources.actions) == sorted(resources.actions)
    assert {"import", "is-importing", "stop-import", "watch"} <= set(resources.actions)
    assert resources.actions["stop-import"].op == "stop_import"
    assert commands["boot-source-selection"].params == ("boot_source_id", "id")


def test_an_anonymous_profile_sees_only_anonymous_handlers() -> None:
    """Without a key only the ``anon`` side of each resource is offered."""
    assert set(build_commands(describe(), anonymous=True)) == {"version"}


def test_a_document_without_resources_is_refused() -> None:
    """A describe answer with no resources list raises ValueError."""
    with pytest.raises(ValueError, match="resources"):
        build_commands({"doc": "MAAS API"}, anonymous=False)


def test_uri_params_are_positional_and_repeated_keys_make_lists(
    commands: dict[str, Command],
) -> None:
    """IDs come first in handler order; key=value pairs keep their order and repeats."""
    inv = parse_invocation(
        commands,
        [
            "boot-source-selections",
            "create",
            "1",
            "os=ubuntu",
            "release=jammy",
            "arches=amd64",
            "arches=arm64",
            "labels=*",
        ],
        prog=PROG,
    )
    assert inv.uri_params == {"boot_source_id": "1"}
    assert inv.data == [
        ("os", "ubuntu"),
        ("release", "jammy"),
        ("arches", "amd64"),
        ("arches", "arm64"),
        ("labels", "*"),
    ]
    assert inv.action.method == "POST"


def test_key_at_equals_names_a_file_and_values_may_contain_equals(
    commands: dict[str, Command],
) -> None:
    """``key@=path`` is a file argument; only the first '=' splits key from value."""
    inv = parse_invocation(
        commands,
        ["boot-source", "update", "3", "keyring_data@=./k.gpg", "url=http://m/x?a=b", "-d"],
        prog=PROG,
    )
    assert inv.files == [("keyring_data", Path("./k.gpg"))]
    assert inv.data == [("url", "http://m/x?a=b")]
    assert inv.debug


def test_a_missing_uri_param_is_a_usage_error_naming_it(commands: dict[str, Command]) -> None:
    """A key=value where an id belongs is not taken as the id."""
    with pytest.raises(UsageError, match="BOOT_SOURCE_ID, ID") as info:
        parse_invocation(commands, ["boot-source-selection", "update", "os=ubuntu"], prog=PROG)
    assert "boot-source-selection update BOOT_SOURCE_ID ID" in info.value.usage


def test_an_unknown_command_lists_the_commands(commands: dict[str, Command]) -> None:
    """The error names what exists."""
    with pytest.raises(UsageError, match="boot-sources, ") as info:
        parse_invocation(commands, ["boot-sorces", "read"], prog=PROG)
    assert "unknown command 'boot-sorces'" in str(info.value)


def test_an_unknown_action_lists_the_actions(commands: dict[str, Command]) -> None:
    """The error and usage list the command's actions with their summaries."""
    with pytest.raises(UsageError, match="actions: create, read") as info:
        parse_invocation(commands, ["boot-sources", "list"], prog=PROG)
    assert "create  Create a boot source." in info.value.usage


def test_extra_words_and_unknown_options_are_refused(commands: dict[str, Command]) -> None:
    """A second positional for a one-id handler, or an unknown flag, is a usage error."""
    with pytest.raises(UsageError, match="unexpected argument '2'"):
        parse_invocation(commands, ["boot-source", "read", "1", "2"], prog=PROG)
    with pytest.raises(UsageError, match="unknown option '--frobnicate'"):
        parse_invocation(commands, ["boot-sources", "read", "--frobnicate"], prog=PROG)


def test_watch_is_only_for_boot_resources_import(commands: dict[str, Command]) -> None:
    """``--watch`` is accepted on ``boot-resources import`` and refused elsewhere."""
    assert parse_invocation(commands, ["boot-resources", "import", "--watch"], prog=PROG).watch
    with pytest.raises(UsageError, match="--watch"):
        parse_invocation(commands, ["boot-sources", "read", "--watch"], prog=PROG)


def test_action_help_lists_the_documented_keywords(commands: dict[str, Command]) -> None:
    """``-h`` after an action shows its usage and each ``:param`` keyword."""
    with pytest.raises(HelpRequested) as info:
        parse_invocation(commands, ["boot-sources", "create", "-h"], prog=PROG)
    assert "usage: bootsync admin boot-sources create" in info.value.text
    assert "url=  The URL of the BootSource." in info.value.text


def test_no_command_is_a_usage_error_listing_commands(commands: dict[str, Command]) -> None:
    """Naming only the profile prints the command list and fails."""
    with pytest.raises(UsageError) as info:
        parse_invocation(commands, [], prog=PROG)
    assert "  boot-sources " in info.value.usage


def test_split_doc_takes_the_first_paragraph_as_summary() -> None:
    """The summary is the first paragraph on one line; the rest is kept apart."""
    assert split_doc("List\nsources.\n\nMore text.") == ("List sources.", "More text.")
    assert split_doc(None) == ("", "")


def test_the_regions_own_describe_document_gives_the_maas_cli_commands() -> None:
    """The region's registry yields the commands and ids the MAAS docs use."""
    commands = build_commands(
        describe_document(HANDLERS, "http://h:5240", "0" * 40), anonymous=False
    )
    assert {
        "boot-sources",
        "boot-source",
        "boot-source-selections",
        "boot-source-selection",
        "boot-resources",
        "boot-resource",
        "maas",
        "rack-controllers",
        "rack-controller",
    } <= set(commands)
    assert commands["boot-source-selection"].params == ("boot_source_id", "id")
    assert {"import", "is-importing", "stop-import", "create", "watch"} <= set(
        commands["boot-resources"].actions
    )
    assert "import-boot-images" in commands["rack-controllers"].actions
    assert "set-config" in commands["maas"].actions
    assert "boot-resource-file-upload" not in commands  # hidden, as in MAAS
