"""``POST boot-sources/?op=fetch``: what a source not saved offers, read and verified, stored nowhere."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from common.mirror.samplestream import SampleStream
from region.api.boot_sources import ONLY_ONE_KEYRING
from region.db import catalogue as repo_catalogue
from region.db import sources as repo_sources
from tests.fakes.upstream import FakeUpstream
from tests.integration.region.api_harness import API_HASH, Region

FETCH = {"op": "fetch"}


@pytest.fixture
def mirror(fake_upstream: FakeUpstream, stream: SampleStream) -> str:
    """The URL of a good signed mirror (the fake upstream serving the sample stream)."""
    fake_upstream.serve_directory(stream.root)
    return fake_upstream.url("/")


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


async def errors_of(resp: Any) -> dict[str, list[str]]:
    """The JSON error body of a 400."""
    assert resp.status == 400, await resp.text()
    body: dict[str, list[str]] = await resp.json()
    return body


async def test_a_good_mirror_answers_its_offer_and_nothing_is_saved(
    api_region: Region, mirror: str, stream: SampleStream
) -> None:
    """A signed mirror and its keyring path answer 200 with every image; no source is stored."""
    resp = await api_region.call(
        "POST",
        "/boot-sources/",
        query=FETCH,
        fields=[("url", mirror), ("keyring_filename", str(stream.keyring))],
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-MAAS-API-Hash"] == API_HASH
    body = await resp.json()
    assert set(body) == {"url", "index_url", "index_updated", "warnings", "images"}
    assert body["url"] == mirror
    assert body["index_url"] == mirror + "streams/v1/index.sjson"
    assert body["warnings"] == []
    offered = {(i["os"], i["release"], i["arch"]) for i in body["images"] if i["os"] == "ubuntu"}
    assert {("ubuntu", "noble", "amd64"), ("ubuntu", "jammy", "amd64")} <= offered
    noble = next(i for i in body["images"] if (i["release"], i["arch"]) == ("noble", "amd64"))
    assert {"os", "arch", "subarch", "release", "label", "kflavor", "title"} <= set(noble)
    assert await repo_sources.list_sources(api_region.ctx.db) == []
    assert api_region.catalogue.reasons == []


async def test_keyring_data_and_the_url_of_a_saved_source_are_accepted(
    api_region: Region, mirror: str, stream: SampleStream
) -> None:
    """A keyring sent as a file part works, and a URL already saved is no error (nothing is saved)."""
    saved = await repo_sources.create_source(
        api_region.ctx.db, url=mirror, keyring_filename=str(stream.keyring)
    )
    resp = await api_region.call(
        "POST",
        "/boot-sources/",
        style="libmaas",
        query=FETCH,
        fields=[("url", mirror), ("keyring_data", stream.keyring.read_bytes(), "keyring_data")],
    )
    assert resp.status == 200, await resp.text()
    assert len((await resp.json())["images"]) > 0
    assert await repo_sources.list_sources(api_region.ctx.db) == [saved]
    assert await repo_catalogue.available(api_region.ctx.db, saved.id) == []


async def test_an_unreachable_url_is_a_400_naming_url(
    api_region: Region, stream: SampleStream
) -> None:
    """Nothing listening at the URL: 400 on ``url`` with the reason."""
    resp = await api_region.call(
        "POST",
        "/boot-sources/",
        query=FETCH,
        fields=[("url", closed_port_url()), ("keyring_filename", str(stream.keyring))],
    )
    errors = await errors_of(resp)
    assert list(errors) == ["url"]
    assert errors["url"][0].startswith("Could not read the source: ")


async def test_a_signature_the_keyring_does_not_verify_is_a_400_naming_the_keyring_field(
    api_region: Region, mirror: str, gpg_keyring_path: Path
) -> None:
    """A keyring without the mirror's key: 400 on the keyring field that was given."""
    by_path = await api_region.call(
        "POST",
        "/boot-sources/",
        query=FETCH,
        fields=[("url", mirror), ("keyring_filename", str(gpg_keyring_path))],
    )
    by_data = await api_region.call(
        "POST",
        "/boot-sources/",
        query=FETCH,
        fields=[("url", mirror), ("keyring_data", gpg_keyring_path.read_bytes(), "keyring_data")],
    )
    for resp, field in ((by_path, "keyring_filename"), (by_data, "keyring_data")):
        errors = await errors_of(resp)
        assert list(errors) == [field]
        assert errors[field][0].startswith(
            "The source's signature could not be verified with this keyring: "
        )
        assert "not in the keyring" in errors[field][0]


async def test_fields_are_validated_as_on_create(api_region: Region, stream: SampleStream) -> None:
    """A missing URL, or both keyring fields, are refused before anything is fetched."""
    missing = await api_region.call(
        "POST", "/boot-sources/", query=FETCH, fields=[("keyring_filename", str(stream.keyring))]
    )
    assert (await errors_of(missing)) == {"url": ["This field is required."]}
    both = await api_region.call(
        "POST",
        "/boot-sources/",
        query=FETCH,
        fields=[
            ("url", "http://mirror.example/"),
            ("keyring_filename", str(stream.keyring)),
            ("keyring_data", stream.keyring.read_bytes(), "keyring_data"),
        ],
    )
    assert (await errors_of(both)) == {"__all__": [ONLY_ONE_KEYRING]}


async def test_only_admins_may_fetch(api_region: Region, mirror: str, stream: SampleStream) -> None:
    """Anonymous callers get 401 and non-admins 403, as for every boot-sources write."""
    fields = [("url", mirror), ("keyring_filename", str(stream.keyring))]
    anonymous = await api_region.call(
        "POST", "/boot-sources/", key=None, query=FETCH, fields=fields
    )
    assert anonymous.status == 401
    user = await api_region.call(
        "POST", "/boot-sources/", key=api_region.user, query=FETCH, fields=fields
    )
    assert user.status == 403
    assert await user.text() == "User is not allowed access to this API."
