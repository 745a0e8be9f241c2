"""MAAS 3.8's boot-source fields: name, priority, enabled and skip_keyring_verification.

Stored, defaulted as MAAS defaults them, checked, and returned in every
boot-source object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from region.api.boot_sources import ONE_KEYRING
from region.db import sources as repo_sources
from tests.integration.region.api_harness import Region

URL = "http://images.example.test/ephemeral-v3/stable/"
OTHER = "http://mirror.example.test/maas/"
UNSIGNED = "http://mirror.example.test/maas/streams/v1/index.json"


async def create(api_region: Region, *fields: tuple[str, str]) -> Any:
    """POST boot-sources/ with ``fields`` (maascli style); the response."""
    return await api_region.call("POST", "/boot-sources/", fields=list(fields))


async def created(api_region: Region, *fields: tuple[str, str]) -> dict[str, Any]:
    """A new source's JSON (asserting 201)."""
    resp = await create(api_region, *fields)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_new_sources_get_maas_defaults(api_region: Region, gpg_keyring_path: Path) -> None:
    """name is the URL, priority one above the highest, enabled, verification on."""
    keyring = ("keyring_filename", str(gpg_keyring_path))
    first = await created(api_region, ("url", URL), keyring)
    second = await created(api_region, ("url", OTHER), keyring)
    assert {k: first[k] for k in ("name", "priority", "enabled", "skip_keyring_verification")} == {
        "name": URL,
        "priority": 1,
        "enabled": True,
        "skip_keyring_verification": False,
    }
    assert (second["name"], second["priority"]) == (OTHER, 2)
    listed = await (await api_region.call("GET", "/boot-sources/")).json()
    assert [(s["name"], s["priority"]) for s in listed] == [(URL, 1), (OTHER, 2)]
    one = await (await api_region.call("GET", f"/boot-sources/{first['id']}/")).json()
    assert one == first


async def test_the_fields_are_stored_as_given_and_updated_alone(
    api_region: Region, gpg_keyring_path: Path
) -> None:
    """Create with all four; PUT one field keeps the others."""
    source = await created(
        api_region,
        ("url", URL),
        ("keyring_filename", str(gpg_keyring_path)),
        ("name", "MAAS Stable"),
        ("priority", "10"),
        ("enabled", "false"),
        ("skip_keyring_verification", "true"),
    )
    assert (
        source["name"],
        source["priority"],
        source["enabled"],
        source["skip_keyring_verification"],
    ) == ("MAAS Stable", 10, False, True)
    resp = await api_region.call(
        "PUT", f"/boot-sources/{source['id']}/", fields=[("enabled", "true")]
    )
    assert resp.status == 200, await resp.text()
    updated = await resp.json()
    assert (updated["name"], updated["priority"], updated["enabled"]) == ("MAAS Stable", 10, True)
    stored = await repo_sources.get_source(api_region.ctx.db, source["id"])
    assert stored is not None
    assert (stored.name, stored.priority, stored.enabled, stored.skip_keyring_verification) == (
        "MAAS Stable",
        10,
        True,
        True,
    )


async def test_an_unsigned_index_url_defaults_to_skipping_verification(
    api_region: Region,
) -> None:
    """As MAAS: a ``.json`` URL needs no keyring and skips verification unless told otherwise."""
    source = await created(api_region, ("url", UNSIGNED))
    assert source["skip_keyring_verification"] is True
    refused = await create(
        api_region, ("url", OTHER + "x/streams/v1/index.json"), ("skip_keyring_verification", "0")
    )
    assert refused.status == 400
    assert await refused.json() == {"__all__": [ONE_KEYRING]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("priority", "-1", "Ensure this value is greater than or equal to 0."),
        ("priority", "first", "Enter a whole number."),
        ("enabled", "maybe", "Enter true or false (also yes/no, on/off, 1/0), not 'maybe'."),
        (
            "skip_keyring_verification",
            "perhaps",
            "Enter true or false (also yes/no, on/off, 1/0), not 'perhaps'.",
        ),
        ("name", "x" * 256, "Ensure this value has at most 255 characters (it has 256)."),
    ],
)
async def test_bad_values_are_refused_naming_the_field(
    api_region: Region, gpg_keyring_path: Path, field: str, value: str, message: str
) -> None:
    """400 {field: [message]}, Django's wording; nothing is stored."""
    resp = await create(
        api_region, ("url", URL), ("keyring_filename", str(gpg_keyring_path)), (field, value)
    )
    assert resp.status == 400
    assert await resp.json() == {field: [message]}
    assert await repo_sources.list_sources(api_region.ctx.db) == []


async def test_name_and_priority_are_unique(api_region: Region, gpg_keyring_path: Path) -> None:
    """A second source may not take another's name or priority (MAAS's unique fields)."""
    keyring = ("keyring_filename", str(gpg_keyring_path))
    await created(api_region, ("url", URL), keyring, ("name", "main"), ("priority", "5"))
    name_taken = await create(api_region, ("url", OTHER), keyring, ("name", "main"))
    priority_taken = await create(api_region, ("url", OTHER), keyring, ("priority", "5"))
    assert await name_taken.json() == {"name": ["Boot source with this Name already exists."]}
    assert await priority_taken.json() == {
        "priority": ["Boot source with this Priority already exists."]
    }


async def test_skipping_verification_of_a_signed_index_url_is_refused(
    api_region: Region, gpg_keyring_path: Path
) -> None:
    """An explicit ``.sjson`` index is always verified: skipping it is a 400 on the field."""
    resp = await create(
        api_region,
        ("url", OTHER + "streams/v1/index.sjson"),
        ("keyring_filename", str(gpg_keyring_path)),
        ("skip_keyring_verification", "true"),
    )
    assert resp.status == 400
    errors = await resp.json()
    assert list(errors) == ["skip_keyring_verification"]
    assert "index.json" in errors["skip_keyring_verification"][0]
