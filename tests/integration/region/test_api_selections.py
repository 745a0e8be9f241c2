"""The selections API answers as MAAS does and checks selections against the catalogue."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from region.api.selections import DUPLICATE
from region.db import catalogue as repo_catalogue
from region.db import config as repo_config
from region.db import sources as repo_sources
from region.db.catalogue import CatalogueEntry
from tests.integration.region.api_harness import (
    Field,
    Region,
    Style,
)

Events = list[MutableMapping[str, Any]]
NOBLE: list[Field] = [
    ("os", "ubuntu"),
    ("release", "noble"),
    ("arches", "amd64"),
    ("subarches", "*"),
    ("labels", "*"),
]
JAMMY: list[Field] = [("os", "ubuntu"), ("release", "jammy"), ("arches", "amd64")]
CATALOGUE = [
    CatalogueEntry(os="ubuntu", arch=arch, subarch=subarch, release=release, label="stable")
    for release, subarches in (("noble", ("ga-24.04", "hwe-24.04")), ("jammy", ("ga-22.04",)))
    for arch in ("amd64", "arm64")
    for subarch in subarches
]


@pytest.fixture
async def source_id(api_region: Region, gpg_keyring_path: Path) -> int:
    """A source without a known catalogue."""
    source = await repo_sources.create_source(
        api_region.ctx.db, url="http://a.example/s/", keyring_filename=str(gpg_keyring_path)
    )
    return source.id


@pytest.fixture
async def known_source_id(api_region: Region, source_id: int) -> int:
    """A source whose catalogue offers noble and jammy on amd64 and arm64, label stable."""
    await repo_catalogue.replace_catalogue(api_region.ctx.db, source_id, CATALOGUE)
    return source_id


async def create(
    api_region: Region, source: int, fields: Sequence[Field], style: Style = "maascli"
) -> Any:
    """POST a selection; returns the response."""
    return await api_region.call(
        "POST", f"/boot-sources/{source}/selections/", fields=fields, style=style
    )


async def errors_of(resp: Any) -> dict[str, list[str]]:
    """The JSON error body of a 400."""
    assert resp.status == 400, await resp.text()
    body: dict[str, list[str]] = await resp.json()
    return body


class TestCrud:
    """Create, read, update and delete."""

    async def test_create_answers_200_with_maas_shape(
        self, api_region: Region, source_id: int, log_events: Events
    ) -> None:
        """libmaas's create (repeated base64 parts) gives 200 and MAAS's fields."""
        resp = await create(api_region, source_id, [*NOBLE, ("arches", "arm64")], style="libmaas")
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body == {
            "os": "ubuntu",
            "release": "noble",
            "arches": ["amd64", "arm64"],
            "subarches": ["*"],
            "labels": ["*"],
            "id": body["id"],
            "boot_source_id": source_id,
            "resource_uri": f"/MAAS/api/2.0/boot-sources/{source_id}/selections/{body['id']}/",
        }
        assert any(
            e["event"] == "selection_created"
            and e["selection_id"] == body["id"]
            and e["user"] == "admin"
            for e in log_events
        )
        assert api_region.catalogue.reasons == []  # selections never refresh the catalogue

    async def test_lists_omitted_on_create_are_empty(
        self, api_region: Region, source_id: int
    ) -> None:
        """As in MAAS, missing arches/subarches/labels are stored as empty lists."""
        resp = await create(
            api_region, source_id, [("os", "ubuntu"), ("release", "noble")], style="form"
        )
        body = await resp.json()
        assert (body["arches"], body["subarches"], body["labels"]) == ([], [], [])

    async def test_read_list_and_one(self, api_region: Region, source_id: int) -> None:
        """The list holds the source's selections; one reads back as created."""
        first = await (await create(api_region, source_id, NOBLE)).json()
        second = await (
            await create(api_region, source_id, [("os", "ubuntu"), ("release", "jammy")])
        ).json()
        base = f"/boot-sources/{source_id}/selections/"
        assert await (await api_region.call("GET", base)).json() == [first, second]
        assert await (await api_region.call("GET", f"{base}{first['id']}/")).json() == first

    async def test_update_is_partial(
        self, api_region: Region, source_id: int, log_events: Events
    ) -> None:
        """PUT with only labels keeps os, release, arches and subarches."""
        created = await (await create(api_region, source_id, NOBLE)).json()
        resp = await api_region.call(
            "PUT",
            f"/boot-sources/{source_id}/selections/{created['id']}/",
            style="libmaas",
            fields=[("labels", "stable")],
        )
        assert resp.status == 200
        assert await resp.json() == {**created, "labels": ["stable"]}
        assert any(
            e["event"] == "selection_updated" and e["fields"] == ["labels"] for e in log_events
        )

    async def test_delete_answers_204_then_404(self, api_region: Region, source_id: int) -> None:
        """A deleted selection is gone (jammy: noble is the commissioning release)."""
        created = await (await create(api_region, source_id, JAMMY)).json()
        path = f"/boot-sources/{source_id}/selections/{created['id']}/"
        deleted = await api_region.call("DELETE", path)
        gone = await api_region.call("GET", path)
        assert deleted.status == 204
        assert gone.status == 404
        assert await gone.text() == "No BootSourceSelection matches the given query."

    async def test_ids_are_scoped_to_their_source(
        self, api_region: Region, source_id: int, gpg_keyring_path: Path
    ) -> None:
        """A selection is not reachable through another source's path."""
        other = await repo_sources.create_source(
            api_region.ctx.db, url="http://b.example/s/", keyring_filename=str(gpg_keyring_path)
        )
        created = await (await create(api_region, source_id, NOBLE)).json()
        resp = await api_region.call("GET", f"/boot-sources/{other.id}/selections/{created['id']}/")
        assert resp.status == 404

    async def test_unknown_source_and_bad_ids_are_404(
        self, api_region: Region, source_id: int
    ) -> None:
        """Unknown or non-integer ids give the right model's 404."""
        cases = {
            "/boot-sources/77/selections/": "BootSource",
            "/boot-sources/x/selections/": "BootSource",
            f"/boot-sources/{source_id}/selections/77/": "BootSourceSelection",
            f"/boot-sources/{source_id}/selections/1.5/": "BootSourceSelection",
        }
        for path, model in cases.items():
            resp = await api_region.call("GET", path)
            assert resp.status == 404
            assert await resp.text() == f"No {model} matches the given query."

    async def test_non_admin_gets_403(self, api_region: Region, source_id: int) -> None:
        """Selections are admin-only as a whole."""
        resp = await api_region.call(
            "GET", f"/boot-sources/{source_id}/selections/", key=api_region.user
        )
        assert resp.status == 403


class TestValidation:
    """Field rules, uniqueness and the catalogue check."""

    async def test_os_and_release_are_required_short_and_plain(
        self, api_region: Region, source_id: int
    ) -> None:
        """Missing, too long and odd names are refused with the field named."""
        missing = await create(api_region, source_id, [("arches", "amd64")])
        long = await create(api_region, source_id, [("os", "u" * 21), ("release", "noble")])
        odd = await create(api_region, source_id, [("os", "ubuntu"), ("release", "no ble")])
        bad_arch = await create(api_region, source_id, [*NOBLE, ("arches", "amd64;rm")])
        assert await errors_of(missing) == {
            "os": ["This field is required."],
            "release": ["This field is required."],
        }
        assert await errors_of(long) == {
            "os": ["Ensure this value has at most 20 characters (it has 21)."]
        }
        assert list(await errors_of(odd)) == ["release"]
        assert "amd64;rm" in (await errors_of(bad_arch))["arches"][0]

    async def test_os_and_release_are_unique_per_source(
        self, api_region: Region, source_id: int
    ) -> None:
        """A second noble selection, created or renamed into, is MAAS's __all__ error."""
        await create(api_region, source_id, NOBLE)
        jammy = await (
            await create(api_region, source_id, [("os", "ubuntu"), ("release", "jammy")])
        ).json()
        again = await create(api_region, source_id, NOBLE)
        renamed = await api_region.call(
            "PUT",
            f"/boot-sources/{source_id}/selections/{jammy['id']}/",
            fields=[("release", "noble")],
        )
        assert await errors_of(again) == {"__all__": [DUPLICATE]}
        assert await errors_of(renamed) == {"__all__": [DUPLICATE]}

    async def test_without_a_catalogue_anything_well_formed_is_accepted(
        self, api_region: Region, source_id: int
    ) -> None:
        """Before the source was ever read, the catalogue cannot refuse a selection."""
        resp = await create(
            api_region, source_id, [("os", "centos"), ("release", "9"), ("arches", "riscv64")]
        )
        assert resp.status == 200

    async def test_catalogue_refuses_unknown_os_and_release(
        self, api_region: Region, known_source_id: int
    ) -> None:
        """MAAS's message for an os/release the source does not offer."""
        resp = await create(api_region, known_source_id, [("os", "ubuntu"), ("release", "focal")])
        assert await errors_of(resp) == {
            "os": ["OS ubuntu with release focal has no available images for download"]
        }

    async def test_catalogue_refuses_arches_subarches_and_labels_not_offered(
        self, api_region: Region, known_source_id: int
    ) -> None:
        """Each list is checked; the message renders the requested list as MAAS does."""
        resp = await create(
            api_region,
            known_source_id,
            [
                ("os", "ubuntu"),
                ("release", "jammy"),
                ("arches", "amd64"),
                ("arches", "ppc64el"),
                ("subarches", "hwe-24.04"),
                ("labels", "candidate"),
            ],
        )
        assert await errors_of(resp) == {
            "arches": ["No available images to download for ['amd64', 'ppc64el']"],
            "subarches": ["No available images to download for ['hwe-24.04']"],
            "labels": ["No available images to download for ['candidate']"],
        }

    async def test_catalogue_accepts_offered_values_and_wildcards(
        self, api_region: Region, known_source_id: int
    ) -> None:
        """Offered values, '*' in lists and '*' as release all pass."""
        exact = await create(
            api_region,
            known_source_id,
            [
                ("os", "ubuntu"),
                ("release", "noble"),
                ("arches", "arm64"),
                ("subarches", "hwe-24.04"),
                ("labels", "stable"),
            ],
        )
        wildcard = await create(
            api_region,
            known_source_id,
            [
                ("os", "ubuntu"),
                ("release", "*"),
                ("arches", "*"),
                ("subarches", "*"),
                ("labels", "*"),
            ],
        )
        assert exact.status == 200, await exact.text()
        assert wildcard.status == 200, await wildcard.text()

    async def test_update_is_checked_against_the_catalogue(
        self, api_region: Region, known_source_id: int
    ) -> None:
        """Changing arches to one the source lacks is refused."""
        created = await (await create(api_region, known_source_id, NOBLE)).json()
        resp = await api_region.call(
            "PUT",
            f"/boot-sources/{known_source_id}/selections/{created['id']}/",
            fields=[("arches", "s390x")],
        )
        assert await errors_of(resp) == {
            "arches": ["No available images to download for ['s390x']"]
        }


class TestFingerprint:
    """repo_sources.sources_fingerprint, which the importer compares around an import."""

    async def test_changes_with_every_source_or_selection_change_only(
        self, api_region: Region, source_id: int
    ) -> None:
        """Creating, editing and deleting selections or sources changes it; a no-op does not."""
        db = api_region.ctx.db
        seen = [await repo_sources.sources_fingerprint(db)]
        sel = await repo_sources.create_selection(db, source_id, os="ubuntu", release="noble")
        seen.append(await repo_sources.sources_fingerprint(db))
        await repo_sources.update_selection(db, source_id, sel.id, arches=["amd64"])
        seen.append(await repo_sources.sources_fingerprint(db))
        await repo_sources.update_selection(db, source_id, sel.id, arches=["amd64"])
        unchanged = await repo_sources.sources_fingerprint(db)
        await repo_sources.update_source(db, source_id, keyring_data=b"k", keyring_filename="")
        seen.append(await repo_sources.sources_fingerprint(db))
        await repo_sources.delete_source(db, source_id)
        seen.append(await repo_sources.sources_fingerprint(db))
        assert unchanged == seen[2]
        assert len(set(seen)) == len(seen) == 5


class TestCommissioningRelease:
    """The selection of the commissioning release cannot be deleted, as in MAAS 3.4."""

    async def test_deleting_the_commissioning_selection_is_refused(
        self, api_region: Region, source_id: int, log_events: Events
    ) -> None:
        """ubuntu/noble (the default commissioning release): 400 with MAAS's text, kept."""
        created = await (await create(api_region, source_id, NOBLE)).json()
        path = f"/boot-sources/{source_id}/selections/{created['id']}/"
        refused = await api_region.call("DELETE", path)
        assert refused.status == 400
        assert refused.content_type == "text/plain"
        assert await refused.text() == (
            "Unable to delete ubuntu noble. "
            "It is the operating system used in ephemeral environments."
        )
        assert (await api_region.call("GET", path)).status == 200
        assert any(e["event"] == "selection_delete_refused" for e in log_events)

    async def test_another_commissioning_release_moves_the_guard(
        self, api_region: Region, source_id: int
    ) -> None:
        """With jammy set for commissioning, noble's selection goes and jammy's stays."""
        noble = await (await create(api_region, source_id, NOBLE)).json()
        jammy = await (await create(api_region, source_id, JAMMY)).json()
        await repo_config.set_config(api_region.ctx.db, "commissioning_distro_series", "jammy")
        base = f"/boot-sources/{source_id}/selections/"
        assert (await api_region.call("DELETE", f"{base}{noble['id']}/")).status == 204
        assert (await api_region.call("DELETE", f"{base}{jammy['id']}/")).status == 400
