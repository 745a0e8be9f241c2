"""The boot-sources API answers as MAAS does, to requests shaped like libmaas's and maascli's."""

from __future__ import annotations

import base64
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from common.trust.keyrings import Keyring
from region.api.boot_sources import ONE_KEYRING, ONLY_ONE_KEYRING, URL_TAKEN
from region.db import catalogue as repo_catalogue
from region.db import sources as repo_sources
from region.db.catalogue import CatalogueEntry
from tests.fakes.gpg import ThrowawayKey, export_public
from tests.integration.region.api_harness import (
    API_HASH,
    Region,
    oauth_header,
)

URL = "http://images.example.test/ephemeral-v3/stable/"
MAAS_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}")
Events = list[MutableMapping[str, Any]]


async def create(api_region: Region, **fields: str) -> dict[str, Any]:
    """Create a source with ``fields`` (maascli style) and return its JSON; assert 201."""
    resp = await api_region.call("POST", "/boot-sources/", fields=list(fields.items()))
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def errors_of(resp: Any) -> dict[str, list[str]]:
    """The JSON error body of a 400."""
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/json"
    body: dict[str, list[str]] = await resp.json()
    return body


class TestCreate:
    """POST /boot-sources/."""

    async def test_create_with_keyring_filename_answers_201_with_maas_shape(
        self, api_region: Region, gpg_keyring_path: Path, log_events: Events
    ) -> None:
        """A new source comes back 201 with exactly MAAS's fields and a refresh is scheduled."""
        resp = await api_region.call(
            "POST",
            "/boot-sources/",
            fields=[("url", URL), ("keyring_filename", str(gpg_keyring_path))],
        )
        assert resp.status == 201
        assert resp.headers["X-MAAS-API-Hash"] == API_HASH
        body = await resp.json()
        assert set(body) == {
            "id",
            "url",
            "keyring_filename",
            "keyring_data",
            "name",
            "priority",
            "enabled",
            "skip_keyring_verification",
            "created",
            "updated",
            "resource_uri",
        }
        assert body["url"] == URL
        assert body["keyring_filename"] == str(gpg_keyring_path)
        assert body["keyring_data"] == ""
        assert MAAS_TIME.fullmatch(body["created"])
        assert MAAS_TIME.fullmatch(body["updated"])
        assert body["resource_uri"] == f"/MAAS/api/2.0/boot-sources/{body['id']}/"
        assert api_region.catalogue.reasons == ["boot_source_created"]
        created = [e for e in log_events if e["event"] == "boot_source_created"]
        assert created[0]["user"] == "admin"
        assert created[0]["boot_source_id"] == body["id"]

    async def test_keyring_data_as_a_file_part_is_stored_and_rendered_base64(
        self, api_region: Region, gpg_keyring: Keyring
    ) -> None:
        """libmaas's file part (base64 transfer encoding) stores the raw keyring bytes."""
        resp = await api_region.call(
            "POST",
            "/boot-sources/",
            style="libmaas",
            fields=[
                ("url", URL),
                ("keyring_filename", ""),
                ("keyring_data", gpg_keyring.binary, "keyring_data"),
            ],
        )
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert base64.b64decode(body["keyring_data"]) == gpg_keyring.binary
        stored = await repo_sources.get_source(api_region.ctx.db, body["id"])
        assert stored is not None
        assert stored.keyring_data == gpg_keyring.binary

    async def test_keyring_data_as_base64_text_is_decoded(
        self, api_region: Region, gpg_keyring: Keyring
    ) -> None:
        """A urlencoded base64 keyring_data value is decoded before it is stored."""
        encoded = base64.b64encode(gpg_keyring.binary).decode()
        resp = await api_region.call(
            "POST", "/boot-sources/", style="form", fields=[("url", URL), ("keyring_data", encoded)]
        )
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["keyring_data"] == encoded

    async def test_armored_keyring_text_is_accepted(
        self, api_region: Region, gpg_signer: ThrowawayKey
    ) -> None:
        """An ASCII-armored keyring sent as text is kept as sent."""
        armored = export_public(gpg_signer, armor=True)
        body = await create(api_region, url=URL, keyring_data=armored.decode())
        assert base64.b64decode(body["keyring_data"]) == armored

    async def test_invalid_base64_is_a_400_on_keyring_data(self, api_region: Region) -> None:
        """Text that is not base64 is refused on the keyring_data field."""
        resp = await api_region.call(
            "POST",
            "/boot-sources/",
            style="form",
            fields=[("url", URL), ("keyring_data", "not base64!!")],
        )
        errors = await errors_of(resp)
        assert list(errors) == ["keyring_data"]
        assert "base64" in errors["keyring_data"][0]

    async def test_bytes_that_hold_no_key_are_refused(self, api_region: Region) -> None:
        """keyring_data must be a keyring gpg can load."""
        resp = await api_region.call(
            "POST",
            "/boot-sources/",
            fields=[("url", URL), ("keyring_data", b"not a keyring", "keyring_data")],
        )
        errors = await errors_of(resp)
        assert errors["keyring_data"][0].startswith("Not a usable GPG keyring")

    async def test_oversized_field_is_a_400_naming_it_not_500(self, api_region: Region) -> None:
        """A keyring part past the multipart reader's 1 MiB field limit is refused before gpg."""
        resp = await api_region.call(
            "POST",
            "/boot-sources/",
            fields=[("url", URL), ("keyring_data", b"\x99" * (1 << 20 | 1), "keyring_data")],
        )
        errors = await errors_of(resp)
        assert errors["keyring_data"][0].startswith("This field is too large")
        assert resp.headers["X-MAAS-API-Hash"] == API_HASH

    async def test_well_known_ubuntu_keyring_paths_are_accepted_on_any_host(
        self, api_region: Region
    ) -> None:
        """The Ubuntu keyring paths MAAS's docs name are accepted where absent; the path is kept."""
        for n, path in enumerate(
            (
                "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg",
                "/snap/maas/current/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg",
            )
        ):
            body = await create(api_region, url=f"{URL}{n}/", keyring_filename=path)
            assert (body["keyring_filename"], body["keyring_data"]) == (path, "")

    async def test_missing_or_relative_keyring_filename_is_refused(
        self, api_region: Region, tmp_path: Path
    ) -> None:
        """keyring_filename must be an absolute path to a loadable keyring."""
        missing = await errors_of(
            await api_region.call(
                "POST",
                "/boot-sources/",
                fields=[("url", URL), ("keyring_filename", str(tmp_path / "nope.gpg"))],
            )
        )
        relative = await errors_of(
            await api_region.call(
                "POST",
                "/boot-sources/",
                fields=[("url", URL), ("keyring_filename", "keys/ubuntu.gpg")],
            )
        )
        assert str(tmp_path / "nope.gpg") in missing["keyring_filename"][0]
        assert "cannot read keyring" in missing["keyring_filename"][0]
        assert relative == {
            "keyring_filename": ["Enter an absolute path to a keyring file on the region."]
        }

    async def test_url_is_required_valid_and_unique(
        self, api_region: Region, gpg_keyring_path: Path
    ) -> None:
        """MAAS's three url messages: required, invalid, taken."""
        keyring = ("keyring_filename", str(gpg_keyring_path))
        await create(api_region, url=URL, keyring_filename=str(gpg_keyring_path))
        missing = await api_region.call("POST", "/boot-sources/", fields=[keyring])
        invalid = await api_region.call(
            "POST", "/boot-sources/", fields=[("url", "ftp://x/"), keyring]
        )
        taken = await api_region.call("POST", "/boot-sources/", fields=[("url", URL), keyring])
        assert await errors_of(missing) == {"url": ["This field is required."]}
        assert await errors_of(invalid) == {"url": ["Enter a valid URL."]}
        assert await errors_of(taken) == {"url": [URL_TAKEN]}

    async def test_exactly_one_keyring_field_must_be_given(
        self, api_region: Region, gpg_keyring_path: Path, gpg_keyring: Keyring
    ) -> None:
        """Neither and both keyring fields give MAAS's two __all__ messages."""
        neither = await api_region.call(
            "POST",
            "/boot-sources/",
            style="libmaas",
            fields=[("url", URL), ("keyring_filename", ""), ("keyring_data", "")],
        )
        both = await api_region.call(
            "POST",
            "/boot-sources/",
            fields=[
                ("url", URL),
                ("keyring_filename", str(gpg_keyring_path)),
                ("keyring_data", gpg_keyring.binary, "keyring_data"),
            ],
        )
        assert await errors_of(neither) == {"__all__": [ONE_KEYRING]}
        assert await errors_of(both) == {"__all__": [ONLY_ONE_KEYRING]}

    async def test_every_field_error_is_reported_at_once(self, api_region: Region) -> None:
        """A bad url and a missing keyring are both reported in one answer."""
        errors = await errors_of(
            await api_region.call("POST", "/boot-sources/", fields=[("url", "nonsense")])
        )
        assert errors == {"url": ["Enter a valid URL."], "__all__": [ONE_KEYRING]}

    async def test_malformed_multipart_is_a_400_not_a_500(self, api_region: Region) -> None:
        """A multipart body cut short is refused as a bad request."""
        resp = await api_region.client.post(
            "/MAAS/api/2.0/boot-sources/",
            data=b'--B\r\nContent-Disposition: form-data; name="url"\r\n\r\nhttp://x/',
            headers={
                "Content-Type": 'multipart/form-data; boundary="B"',
                "Authorization": oauth_header(api_region.admin, realm=True),
            },
        )
        errors = await errors_of(resp)
        assert "Malformed multipart body" in errors["__all__"][0]
        assert resp.headers["X-MAAS-API-Hash"] == API_HASH


class TestReadUpdateDelete:
    """GET, PUT and DELETE /boot-sources/{id}/."""

    async def test_read_lists_and_reads_one(
        self, api_region: Region, gpg_keyring_path: Path
    ) -> None:
        """The list holds every source; one source reads back as created."""
        first = await create(api_region, url=URL, keyring_filename=str(gpg_keyring_path))
        second = await create(api_region, url=URL + "2/", keyring_filename=str(gpg_keyring_path))
        listing = await api_region.call("GET", "/boot-sources/")
        one = await api_region.call("GET", f"/boot-sources/{second['id']}/", style="libmaas")
        assert await listing.json() == [first, second]
        assert await one.json() == second

    async def test_unknown_or_non_integer_id_is_404(self, api_region: Region) -> None:
        """A missing id and a non-number both give MAAS's 404 text."""
        for path in ("/boot-sources/99/", "/boot-sources/abc/", "/boot-sources/-1/"):
            resp = await api_region.call("GET", path)
            assert resp.status == 404
            assert await resp.text() == "No BootSource matches the given query."

    async def test_update_is_partial(
        self, api_region: Region, gpg_keyring_path: Path, log_events: Events
    ) -> None:
        """PUT with only url changes the url and keeps the keyring."""
        before = await create(api_region, url=URL, keyring_filename=str(gpg_keyring_path))
        resp = await api_region.call(
            "PUT",
            f"/boot-sources/{before['id']}/",
            style="libmaas",
            fields=[("url", URL + "moved/")],
        )
        after = await resp.json()
        assert resp.status == 200
        assert after["url"] == URL + "moved/"
        assert after["keyring_filename"] == before["keyring_filename"]
        assert after["created"] == before["created"]
        assert after["updated"] >= before["updated"]
        assert api_region.catalogue.reasons == ["boot_source_created", "boot_source_updated"]
        updated = [e for e in log_events if e["event"] == "boot_source_updated"]
        assert updated[0]["fields"] == ["url"]
        assert updated[0]["user"] == "admin"

    async def test_empty_multipart_update_changes_nothing(
        self, api_region: Region, gpg_keyring_path: Path
    ) -> None:
        """libmaas's empty body (one part without headers) means no fields, not a 400."""
        before = await create(api_region, url=URL, keyring_filename=str(gpg_keyring_path))
        resp = await api_region.call("PUT", f"/boot-sources/{before['id']}/", style="libmaas")
        assert resp.status == 200, await resp.text()
        after = await resp.json()
        assert {**after, "updated": None} == {**before, "updated": None}

    async def test_setting_keyring_data_alone_replaces_the_filename(
        self, api_region: Region, gpg_keyring_path: Path, gpg_keyring: Keyring
    ) -> None:
        """Clients send only changed fields, so a new keyring_data clears keyring_filename."""
        before = await create(api_region, url=URL, keyring_filename=str(gpg_keyring_path))
        resp = await api_region.call(
            "PUT",
            f"/boot-sources/{before['id']}/",
            fields=[("keyring_data", gpg_keyring.binary, "keyring_data")],
        )
        after = await resp.json()
        assert after["keyring_filename"] == ""
        assert base64.b64decode(after["keyring_data"]) == gpg_keyring.binary

    async def test_update_validates_like_create(
        self, api_region: Region, gpg_keyring_path: Path
    ) -> None:
        """An update to a taken or invalid url, or to no keyring at all, is refused."""
        keyring = str(gpg_keyring_path)
        await create(api_region, url=URL, keyring_filename=keyring)
        other = await create(api_region, url=URL + "other/", keyring_filename=keyring)
        path = f"/boot-sources/{other['id']}/"
        taken = await api_region.call("PUT", path, fields=[("url", URL)])
        invalid = await api_region.call("PUT", path, fields=[("url", "http://")])
        no_keyring = await api_region.call("PUT", path, fields=[("keyring_filename", "")])
        assert await errors_of(taken) == {"url": [URL_TAKEN]}
        assert await errors_of(invalid) == {"url": ["Enter a valid URL."]}
        assert await errors_of(no_keyring) == {"__all__": [ONE_KEYRING]}

    async def test_delete_answers_204_and_cascades(
        self, api_region: Region, gpg_keyring_path: Path, log_events: Events
    ) -> None:
        """libmaas's delete (empty multipart) removes the source, its selections and catalogue."""
        source = await create(api_region, url=URL, keyring_filename=str(gpg_keyring_path))
        db = api_region.ctx.db
        await repo_sources.create_selection(
            db, source["id"], os="ubuntu", release="noble", arches=["amd64"]
        )
        await repo_catalogue.replace_catalogue(
            db,
            source["id"],
            [
                CatalogueEntry(
                    os="ubuntu", arch="amd64", subarch="generic", release="noble", label="stable"
                )
            ],
        )
        resp = await api_region.call("DELETE", f"/boot-sources/{source['id']}/", style="libmaas")
        assert resp.status == 204, await resp.text()
        assert resp.content_type == "text/plain"
        again = await api_region.call("GET", f"/boot-sources/{source['id']}/")
        assert again.status == 404
        assert await repo_sources.list_selections(db) == []
        assert await repo_catalogue.available(db, source["id"]) == []
        assert api_region.catalogue.reasons[-1] == "boot_source_deleted"
        assert any(
            e["event"] == "boot_source_deleted" and e["boot_source_id"] == source["id"]
            for e in log_events
        )

    async def test_maascli_delete_without_body_answers_204(
        self, api_region: Region, gpg_keyring_path: Path
    ) -> None:
        """The maas CLI's DELETE carries no body at all."""
        source = await create(api_region, url=URL, keyring_filename=str(gpg_keyring_path))
        resp = await api_region.call("DELETE", f"/boot-sources/{source['id']}/")
        assert resp.status == 204

    async def test_a_deleted_sources_id_is_never_given_again(
        self, api_region: Region, gpg_keyring_path: Path
    ) -> None:
        """Create, delete, create the same URL: the new source has a larger id; the old one is 404."""
        first = await create(api_region, url=URL, keyring_filename=str(gpg_keyring_path))
        resp = await api_region.call("DELETE", f"/boot-sources/{first['id']}/")
        assert resp.status == 204
        second = await create(api_region, url=URL, keyring_filename=str(gpg_keyring_path))
        assert second["id"] > first["id"]
        stale = await api_region.call("GET", f"/boot-sources/{first['id']}/")
        assert stale.status == 404


class TestPermissions:
    """Boot sources are admin-only as a whole."""

    async def test_without_a_key_the_answer_is_401(self, api_region: Region) -> None:
        """No Authorization header: 401 with an OAuth challenge."""
        resp = await api_region.call("GET", "/boot-sources/", key=None)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'OAuth realm="OAuth"'
        assert resp.headers["X-MAAS-API-Hash"] == API_HASH

    async def test_a_non_admin_gets_403_even_for_reads(self, api_region: Region) -> None:
        """A valid non-admin key may neither read nor create sources."""
        read = await api_region.call("GET", "/boot-sources/", key=api_region.user)
        write = await api_region.call(
            "POST", "/boot-sources/", key=api_region.user, fields=[("url", URL)]
        )
        for resp in (read, write):
            assert resp.status == 403
            assert await resp.text() == "User is not allowed access to this API."

    async def test_unknown_op_is_400(self, api_region: Region) -> None:
        """An op the resource lacks is MAAS's 'Unrecognised signature'."""
        resp = await api_region.call("GET", "/boot-sources/", query={"op": "frobnicate"})
        assert resp.status == 400
        assert await resp.text() == "Unrecognised signature: method=GET op=frobnicate"
