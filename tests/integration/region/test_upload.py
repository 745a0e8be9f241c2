"""Custom image upload on the daemon's own app: one request, chunked PUTs, dedup, MAAS's errors."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner
from pytest_aiohttp import AiohttpClient

from region.api.http import API_ROOT
from region.db import catalogue as repo_catalogue
from region.db import config as repo_config
from region.db import sources as repo_sources
from region.db.catalogue import CatalogueEntry
from region.db.imports import WantedFile, WantedSet, write_wanted
from region.db.users import ApiKey
from region.images.publish import PRODUCTS_PATH
from tests.fakes.waiting import eventually
from tests.integration.region.api_harness import Field, maas_multipart, oauth_header
from tests.integration.region.rack_harness import RackRegion, start_region

CHUNK = 4 << 20
IMAGE = bytes(range(256)) * ((CHUNK * 2 + 12345) // 256)  # three chunks, the last short
IMAGE_SHA = hashlib.sha256(IMAGE).hexdigest()
NOT_ADMIN = "This method is reserved for admin users."


async def create(
    region: RackRegion, fields: Sequence[Field], *, key: ApiKey | None = None
) -> aiohttp.ClientResponse:
    """POST boot-resources/ as the maas CLI encodes it (multipart, base64 parts)."""
    body, ctype = maas_multipart(fields)
    return await region.client.post(
        f"{API_ROOT}/boot-resources/",
        data=body,
        headers={
            "Content-Type": ctype,
            "Authorization": oauth_header(key or region.admin, realm=False),
        },
    )


async def announce(
    region: RackRegion,
    name: str = "custom/mine",
    *,
    data: bytes = IMAGE,
    extra: Sequence[Field] = (),
) -> dict[str, Any]:
    """Create an upload with sha256 + size; the 201 body."""
    resp = await create(
        region,
        [
            ("name", name),
            ("architecture", "amd64/generic"),
            ("sha256", hashlib.sha256(data).hexdigest()),
            ("size", str(len(data))),
            *extra,
        ],
    )
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def newest_file(resource: dict[str, Any]) -> dict[str, Any]:
    """The single file of the newest set, as maascli and libmaas pick it."""
    files = resource["sets"][max(resource["sets"])]["files"]
    assert len(files) == 1
    file: dict[str, Any] = next(iter(files.values()))
    return file


async def put(
    region: RackRegion,
    uri: str,
    data: bytes,
    *,
    key: ApiKey | None = None,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientResponse:
    """PUT one raw chunk, signed, as the clients send it."""
    return await region.client.put(
        uri,
        data=io.BytesIO(data),
        headers={
            "Content-Type": "application/octet-stream",
            "Authorization": oauth_header(key or region.admin, realm=True),
            **(headers or {}),
        },
    )


async def upload_all(region: RackRegion, uri: str, data: bytes = IMAGE) -> list[int]:
    """PUT ``data`` in 4 MiB chunks; the statuses."""
    statuses = []
    for start in range(0, len(data), CHUNK):
        resp = await put(region, uri, data[start : start + CHUNK])
        statuses.append(resp.status)
        await resp.read()
    return statuses


async def read(region: RackRegion, resource_id: int) -> dict[str, Any]:
    """GET boot-resources/{id}/ as the admin."""
    resp = await region.api("GET", f"/boot-resources/{resource_id}/")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def published_items(region: RackRegion) -> dict[str, str]:
    """product name → sha256 of the root image in the region's current stream."""
    resp = await region.client.get(f"/MAAS/images-stream/{PRODUCTS_PATH}")
    if resp.status != 200:
        return {}
    doc = json.loads(await resp.read())
    found = {}
    for name, product in doc["products"].items():
        for version in product["versions"].values():
            for item in version["items"].values():
                if item["ftype"].startswith("root-"):
                    found[name] = item["sha256"]
    return found


async def test_chunked_upload_completes_verifies_and_is_published(region: RackRegion) -> None:
    """sha256+size → 201 with upload_uri; 4 MiB PUTs each 200; then complete and in the stream."""
    created = await announce(region, extra=[("title", "Mine")])
    assert created["type"] == "Uploaded"
    assert created["name"] == "mine"
    assert created["architecture"] == "amd64/generic"
    assert created["title"] == "Mine"
    assert created["subarches"] == "generic"
    version = max(created["sets"])
    assert version == datetime.now(UTC).strftime("%Y%m%d")
    assert created["sets"][version]["label"] == "uploaded"
    file = newest_file(created)
    assert file["filename"] == file["filetype"] == "root-tgz"
    assert (file["sha256"], file["size"], file["complete"]) == (IMAGE_SHA, len(IMAGE), False)
    assert (
        file["upload_uri"]
        == f"{API_ROOT}/boot-resources/{created['id']}/upload/{file['upload_uri'].split('/')[-2]}/"
    )

    assert await upload_all(region, file["upload_uri"]) == [200, 200, 200]
    done = await read(region, created["id"])
    final = newest_file(done)
    assert final["complete"] is True
    assert "upload_uri" not in final
    assert "progress" not in final
    assert await region.ctx.store.has(IMAGE_SHA, len(IMAGE))

    async def published() -> bool:
        return (await published_items(region)).get(
            "maas:boot:custom:amd64:generic:mine"
        ) == IMAGE_SHA

    await eventually(published, "the upload in the region's stream")


async def test_progress_is_shown_between_chunks(region: RackRegion) -> None:
    """After one chunk the file is incomplete with progress and still has its upload_uri."""
    file = newest_file(await announce(region))
    resp = await put(region, file["upload_uri"], IMAGE[:CHUNK])
    assert resp.status == 200
    state = await resp.json()
    assert (state["bytes_received"], state["complete"]) == (CHUNK, False)
    again = newest_file(await read(region, int(file["upload_uri"].split("/")[-4])))
    assert again["progress"] == pytest.approx(100 * CHUNK / len(IMAGE), abs=0.1)
    assert again["upload_uri"] == file["upload_uri"]


@pytest.mark.parametrize("base64", [True, False], ids=["maascli-base64", "curl-binary"])
async def test_content_in_one_request_is_stored_and_published_at_once(
    region: RackRegion, base64: bool
) -> None:
    """content@=FILE in the POST: 201 with a complete file, the blob stored, the stream updated."""
    data = IMAGE[:300_001]
    if base64:
        resp = await create(
            region,
            [
                ("name", "ubuntu/custom-one"),
                ("architecture", "arm64/generic"),
                ("filetype", "ddraw"),
                ("content", data, "content"),
            ],
        )
    else:
        form = aiohttp.FormData()
        form.add_field("name", "ubuntu/custom-one")
        form.add_field("architecture", "arm64/generic")
        form.add_field("filetype", "ddraw")
        form.add_field(
            "content", data, filename="image.raw", content_type="application/octet-stream"
        )
        resp = await region.client.post(
            f"{API_ROOT}/boot-resources/",
            data=form,
            headers={"Authorization": oauth_header(region.admin, realm=False)},
        )
    assert resp.status == 201, await resp.text()
    file = newest_file(await resp.json())
    sha = hashlib.sha256(data).hexdigest()
    assert (file["filetype"], file["sha256"], file["size"], file["complete"]) == (
        "root-dd.raw",
        sha,
        len(data),
        True,
    )
    assert "upload_uri" not in file
    assert await region.ctx.store.has(sha, len(data))
    assert (await published_items(region))["maas:boot:ubuntu:arm64:generic:custom-one"] == sha


async def test_an_already_stored_sha256_makes_the_file_complete_at_once(region: RackRegion) -> None:
    """A second announcement of stored content needs no PUT: complete, no upload_uri."""
    first = newest_file(await announce(region, "custom/first"))
    await upload_all(region, first["upload_uri"])
    second = await announce(region, "custom/second")
    file = newest_file(second)
    assert file["complete"] is True
    assert "upload_uri" not in file
    assert (await read(region, second["id"]))["sets"][max(second["sets"])]["complete"] is True


async def test_same_sha256_with_another_size_is_refused(region: RackRegion) -> None:
    """MAAS's message when the sha256 is known with a different size; nothing is created."""
    await announce(region, "custom/first")
    resp = await create(
        region,
        [
            ("name", "custom/second"),
            ("architecture", "amd64/generic"),
            ("sha256", IMAGE_SHA),
            ("size", str(len(IMAGE) + 1)),
        ],
    )
    assert resp.status == 400
    assert await resp.text() == "File already exists with sha256 that is of different size."
    listed = await (await region.api("GET", "/boot-resources/")).json()
    assert [r["name"] for r in listed] == ["first"]


class DaemonLikeServer(TestServer):
    """A test server that, like the daemon's runner, does not cancel handlers on disconnect."""

    async def _make_runner(self, handler_cancellation: bool = False, **kwargs: Any) -> BaseRunner:
        return await super()._make_runner(handler_cancellation=False, **kwargs)


@pytest.mark.parametrize("cancelled", [True, False], ids=["handler-cancelled", "daemon-like"])
async def test_a_chunk_cut_short_is_not_counted_and_the_upload_resumes(
    data_dir: Path, aiohttp_client: AiohttpClient, cancelled: bool
) -> None:
    """A PUT whose client goes away mid-body adds nothing; sending that chunk again continues."""

    def client(app: web.Application, **kwargs: Any) -> Any:
        return aiohttp_client(app if cancelled else DaemonLikeServer(app), **kwargs)

    region = await start_region(data_dir, cast(AiohttpClient, client))
    file = newest_file(await announce(region))
    uri, file_id = file["upload_uri"], int(file["upload_uri"].split("/")[-2])
    partial = region.ctx.store.root / "uploads" / f"{file_id}.part"
    assert (await put(region, uri, IMAGE[:CHUNK])).status == 200
    host, port = region.client.server.host, region.client.server.port
    _reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"PUT {uri} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {oauth_header(region.admin, realm=False)}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {CHUNK}\r\n\r\n"
    )
    writer.write(head.encode() + b"\xee" * (3 << 20))  # 3 of 4 MiB: some reach the disk
    await writer.drain()
    await eventually(lambda: partial.stat().st_size > CHUNK, "the cut chunk on disk")
    writer.close()
    await writer.wait_closed()

    rest = [await put(region, uri, IMAGE[s : s + CHUNK]) for s in range(CHUNK, len(IMAGE), CHUNK)]
    assert [r.status for r in rest] == [200, 200]
    assert await region.ctx.store.has(IMAGE_SHA, len(IMAGE))
    assert newest_file(await read(region, int(uri.split("/")[-4])))["complete"] is True


async def test_chunk_errors_answer_maas_messages(region: RackRegion) -> None:
    """Missing data, too much data, and a complete file each answer 400 with MAAS's text."""
    file = newest_file(await announce(region))
    uri = file["upload_uri"]
    resp = await put(region, uri, b"")
    assert (resp.status, await resp.text()) == (400, "Missing data.")
    resp = await put(region, uri, IMAGE + b"x")
    assert (resp.status, await resp.text()) == (400, "Too much data received.")
    assert await upload_all(region, uri) == [200, 200, 200]
    resp = await put(region, uri, b"more")
    assert (resp.status, await resp.text()) == (400, "Cannot upload to a complete file.")


async def test_data_that_does_not_match_the_sha256_is_not_stored(region: RackRegion) -> None:
    """The last chunk checks the sha256: 400, no blob, progress back to 0; a retry succeeds."""
    created = await announce(region)
    uri = newest_file(created)["upload_uri"]
    wrong = bytearray(IMAGE)
    wrong[-1] ^= 0xFF
    statuses = []
    for start in range(0, len(wrong), CHUNK):
        resp = await put(region, uri, bytes(wrong[start : start + CHUNK]))
        statuses.append((resp.status, await resp.text()))
    assert statuses[-1] == (400, "Saved content does not match given SHA256 value.")
    assert not await region.ctx.store.has(IMAGE_SHA, len(IMAGE))
    state = newest_file(await read(region, created["id"]))
    assert (state["complete"], state["progress"]) == (False, 0)
    assert not (region.ctx.store.root / "uploads" / f"{uri.split('/')[-2]}.part").exists()
    assert await upload_all(region, uri) == [200, 200, 200]
    assert await region.ctx.store.has(IMAGE_SHA, len(IMAGE))


async def test_one_request_content_not_matching_a_given_sha256_stores_nothing(
    region: RackRegion,
) -> None:
    """content with a different sha256: 400 with MAAS's message, no resource and no blob."""
    resp = await create(
        region,
        [
            ("name", "custom/x"),
            ("architecture", "amd64/generic"),
            ("sha256", "0" * 64),
            ("content", b"abc", "content"),
        ],
    )
    assert (resp.status, await resp.text()) == (
        400,
        "Saved content does not match given SHA256 value.",
    )
    assert await (await region.api("GET", "/boot-resources/")).json() == []
    assert not await region.ctx.store.has(hashlib.sha256(b"abc").hexdigest(), 3)
    assert list((region.ctx.store.root / "uploads").glob("*")) == []


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": None}, "name", "This field is required."),
        ({"name": "ubuntu"}, "name", "ubuntu is a reserved name"),
        ({"name": "custom/centos7"}, "name", "centos7 is a reserved name"),
        ({"name": "noble"}, "name", "noble is a reserved name"),
        ({"name": "ubuntu/noble"}, "name", "ubuntu/noble is a reserved name"),
        (
            {"name": "plan9/x"},
            "name",
            "Unsupport operating system plan9, supported operating "
            "systems: ['ubuntu', 'centos', 'rhel', 'custom', 'windows', 'suse', 'esxi', "
            "'ubuntu-core', 'ol']",
        ),
        (
            {"name": "custom/bad name"},
            "name",
            "Enter a valid name: use letters, digits, '.', '_', "
            "'+' and '-' (at most 64), and at most one '/'.",
        ),
        (
            {"architecture": "amd64"},
            "architecture",
            "Invalid architecture, missing subarchitecture.",
        ),
        (
            {"filetype": "zip"},
            "filetype",
            "Select a valid choice. zip is not one of the available choices.",
        ),
        (
            {"base_image": "noble"},
            "base_image",
            "a base image must follow the format: <osystem>/<series>",
        ),
        (
            {"base_image": "windows/2019"},
            "base_image",
            "custom images require a valid non-custom OS type base image",
        ),
        (
            {"base_image": "ubuntu/warty"},
            "base_image",
            "please select a valid base image OS and version",
        ),
        ({"sha256": "abc"}, "sha256", "Enter the sha256 as 64 hexadecimal digits."),
        ({"size": "0"}, "size", "Ensure this value is greater than or equal to 1."),
    ],
    ids=[
        "no-name",
        "os-name",
        "centos",
        "release",
        "os-release",
        "unsupported-os",
        "unsafe-name",
        "no-subarch",
        "filetype",
        "base-format",
        "base-os",
        "base-unknown",
        "sha256",
        "size",
    ],
)
async def test_create_refuses_bad_fields_with_maas_messages(
    region: RackRegion, overrides: dict[str, str | None], field: str, message: str
) -> None:
    """Each naming rule answers 400 {field: [message]}; nothing is created."""
    await repo_catalogue.replace_catalogue(
        region.ctx.db,
        await _source_id(region),
        [
            CatalogueEntry(
                os="ubuntu", arch="amd64", subarch="ga-24.04", release="noble", label="stable"
            )
        ],
    )
    given: dict[str, str | None] = {
        "name": "custom/fine",
        "architecture": "amd64/generic",
        "sha256": IMAGE_SHA,
        "size": str(len(IMAGE)),
        **overrides,
    }
    resp = await create(region, [(k, v) for k, v in given.items() if v is not None])
    assert resp.status == 400
    assert (await resp.json())[field] == [message]
    assert await (await region.api("GET", "/boot-resources/")).json() == []


async def _source_id(region: RackRegion) -> int:
    source = await repo_sources.create_source(
        region.ctx.db, url="http://m.example/", keyring_filename="/k.gpg"
    )
    return source.id


async def test_unknown_architecture_lists_the_usable_ones(region: RackRegion) -> None:
    """MAAS's architecture message names what would have been accepted."""
    resp = await create(
        region,
        [
            ("name", "custom/x"),
            ("architecture", "sparc/generic"),
            ("sha256", IMAGE_SHA),
            ("size", "10"),
        ],
    )
    assert resp.status == 400
    message = (await resp.json())["architecture"][0]
    assert message.startswith(
        "'sparc/generic' is not a valid architecture.  It should be one of: 'amd64/generic', "
    )


async def test_announcing_needs_sha256_and_size_without_content(region: RackRegion) -> None:
    """Without content, sha256 and size are required."""
    resp = await create(region, [("name", "custom/x"), ("architecture", "amd64/generic")])
    assert resp.status == 400
    assert await resp.json() == {
        "sha256": ["This field is required."],
        "size": ["This field is required."],
    }


async def test_upload_is_admin_only(region: RackRegion) -> None:
    """A plain user gets 403 for create and for a chunk; no key gets 401."""
    resp = await create(
        region,
        [
            ("name", "custom/x"),
            ("architecture", "amd64/generic"),
            ("sha256", IMAGE_SHA),
            ("size", "10"),
        ],
        key=region.user,
    )
    assert (resp.status, await resp.text()) == (403, NOT_ADMIN)
    uri = newest_file(await announce(region))["upload_uri"]
    resp = await put(region, uri, b"abc", key=region.user)
    assert (resp.status, await resp.text()) == (403, NOT_ADMIN)
    resp = await region.client.put(uri, data=b"abc")
    assert resp.status == 401


async def test_chunks_to_a_synced_resource_or_an_unknown_file_are_refused(
    region: RackRegion,
) -> None:
    """A synced resource's file answers 403 with MAAS's text; an unknown file 404."""
    await write_wanted(
        region.ctx.db,
        [
            WantedSet(
                name="ubuntu/noble",
                architecture="amd64/generic",
                kflavor=None,
                bootloader_type=None,
                rolling=False,
                extra={},
                version="20250101",
                label="stable",
                files=(WantedFile("squashfs", "squashfs", "a" * 64, 10),),
            )
        ],
        {},
    )
    resource = (await (await region.api("GET", "/boot-resources/")).json())[0]
    async with (
        region.ctx.db.read() as conn,
        conn.execute("SELECT id FROM boot_resource_files") as cur,
    ):
        file_id = (await cur.fetchone())[0]  # type: ignore[index]
    uri = f"{API_ROOT}/boot-resources/{resource['id']}/upload/{file_id}/"
    resp = await put(region, uri, b"abc")
    assert (resp.status, await resp.text()) == (403, "Cannot upload to a resource of type: Synced.")
    resp = await put(region, f"{API_ROOT}/boot-resources/{resource['id']}/upload/999/", b"a")
    assert resp.status == 404


async def test_a_new_upload_replaces_the_old_set_unless_keep_old(region: RackRegion) -> None:
    """Re-uploading makes set YYYYmmdd.1; on completion the older set goes unless keep_old."""
    first = await announce(region)
    await upload_all(region, newest_file(first)["upload_uri"])
    other = IMAGE[: CHUNK + 7]
    second = await announce(region, data=other)
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert sorted(second["sets"]) == [today, f"{today}.1"]
    assert second["id"] == first["id"]
    await upload_all(region, newest_file(second)["upload_uri"], other)
    assert sorted((await read(region, first["id"]))["sets"]) == [f"{today}.1"]

    third = await announce(region, data=IMAGE[:100], extra=[("keep_old", "true")])
    await upload_all(region, newest_file(third)["upload_uri"], IMAGE[:100])
    assert sorted((await read(region, first["id"]))["sets"]) == [f"{today}.1", f"{today}.2"]


async def test_an_upload_larger_than_the_free_space_is_refused(region: RackRegion) -> None:
    """Announcing more bytes than the store can hold answers 507; nothing is created."""
    resp = await create(
        region,
        [
            ("name", "custom/huge"),
            ("architecture", "amd64/generic"),
            ("sha256", IMAGE_SHA),
            ("size", str(1 << 60)),
        ],
    )
    assert resp.status == 507
    assert (await resp.text()).startswith("No space left on device")
    assert await (await region.api("GET", "/boot-resources/")).json() == []


async def test_a_custom_upload_without_base_image_gets_the_commissioning_release(
    region: RackRegion,
) -> None:
    """As MAAS: no base_image → the commissioning OS/release; a re-upload keeps its base."""
    first = await announce(region, "custom/plain", data=b"one")
    await repo_config.set_config(region.ctx.db, "commissioning_distro_series", "jammy")
    other = await announce(region, "custom/later", data=b"two")
    given = await announce(region, "custom/given", data=b"three", extra=[("base_image", "rhel/8")])
    again = await announce(region, "custom/given", data=b"four")
    assert first["base_image"] == "ubuntu/noble"
    assert other["base_image"] == "ubuntu/jammy"
    assert given["base_image"] == "rhel/8"
    assert again["base_image"] == "rhel/8"
