"""A rack pulls a real region's published stream: layout, serving, 304 polls, refusals."""

from __future__ import annotations

import asyncio
import json
import tarfile
from collections.abc import MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.storage.blobstore import BlobStore
from common.transfer.download import Downloader
from rack import web as rack_web
from rack.app import open_rack
from rack.pull import run_pull
from tests.fakes.daemons import DaemonProcess
from tests.fakes.gpg import ThrowawayKey, clearsign, export_public
from tests.fakes.region import FakeRegion
from tests.integration.rack.harness import published_files, rack_config, sha256_of

pytestmark = pytest.mark.slow

INDEX = "streams/v1/index.sjson"
GA = "ubuntu/amd64/ga-24.04/noble"
SQUASHFS = f"{GA}/20250718/squashfs"

ClientFactory = Any


def events(log: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    """The captured log events called ``name``."""
    return [e for e in log if e["event"] == name]


async def serve(aiohttp_client: ClientFactory, data_dir: Path) -> TestClient[Any, Any]:
    """A client of the rack's /images/ routes over ``data_dir``."""
    app = web.Application()
    app[rack_web.BOOT_RESOURCES] = data_dir / "boot-resources"
    rack_web.add_routes(app)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def test_first_pull_builds_the_maas_layout_and_serves_files_byte_identical_with_range(
    fake_region: FakeRegion,
    region: DaemonProcess,
    tmp_path: Path,
    aiohttp_client: ClientFactory,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """Images land at os/arch/subarch/release/label, bootloaders under bootloader/, unpacked,
    with MAAS's boot files (bootx64.efi, lpxelinux.0, ...) linked at the root."""
    data = tmp_path / "rack"
    async with open_rack(rack_config(fake_region, data)) as rack:
        await rack.link.register_once()
        result = await run_pull(rack.pull, reason="test")
    assert result.outcome == "ok", result.error
    published = await published_files(region.url)
    current = data / "boot-resources" / "current"
    expected = {
        "ubuntu/amd64/ga-24.04/noble/stable/squashfs": SQUASHFS,
        "ubuntu/amd64/ga-24.04/noble/stable/boot-kernel": f"{GA}/20250718/boot-kernel",
        "ubuntu/amd64/generic/noble/stable/boot-kernel": f"{GA}/20250718/boot-kernel",
        "ubuntu/amd64/hwe-24.04/noble/stable/boot-initrd": "ubuntu/amd64/hwe-24.04/noble/20250718/boot-initrd",
        "bootloader/uefi/amd64/shim-signed.tar.xz": "grub-efi-signed/amd64/generic/uefi/20250718.0/shim-signed.tar.xz",
        "bootloader/pxe/i386/syslinux.tar.xz": "pxelinux/i386/generic/pxe/20250718.0/syslinux.tar.xz",
    }
    for rack_path, stream_path in expected.items():
        assert sha256_of(current / rack_path) == published[stream_path], rack_path
    assert (current / "maas.meta").is_file()
    shim = current / "bootloader/uefi/amd64/shim-signed.tar.xz"
    with tarfile.open(shim) as tar:
        shipped = tar.extractfile("bootx64.efi")
        assert shipped is not None
        assert (current / "bootx64.efi").read_bytes() == shipped.read()
    assert (current / "bootx64.efi").readlink() == Path("bootloader/uefi/amd64/bootx64.efi")
    for name in ("grubx64.efi", "bootaa64.efi", "grubaa64.efi", "bootppc64.bin", "lpxelinux.0"):
        assert (current / name).is_file(), name
    assert (current / "bootloader/open-firmware/ppc64el/bootppc64.bin").is_file()
    assert not (current / "shim-signed.tar.xz").exists()
    assert [
        e["event"]
        for e in log_events
        if e["event"]
        in {
            "pull_started",
            "index_verified",
            "products_verified",
            "pull_planned",
            "snapshot_published",
            "pull_finished",
        }
    ] == [
        "pull_started",
        "index_verified",
        "products_verified",
        "pull_planned",
        "snapshot_published",
        "pull_finished",
    ]
    summary = events(log_events, "pull_finished")[0]
    assert summary["files_fetched"] == result.files_fetched > 0
    assert summary["snapshot_id"] == current.readlink().name

    client = await serve(aiohttp_client, data)
    squashfs = tmp_path / "squashfs"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{region.url}/MAAS/images-stream/{SQUASHFS}") as resp,
    ):
        squashfs.write_bytes(await resp.read())
    whole = squashfs.read_bytes()
    resp = await client.get("/images/ubuntu/amd64/ga-24.04/noble/stable/squashfs")
    assert resp.status == 200
    assert await resp.read() == whole
    etag = resp.headers["ETag"]
    resp = await client.get(
        "/images/ubuntu/amd64/ga-24.04/noble/stable/squashfs", headers={"Range": "bytes=1000-4999"}
    )
    assert resp.status == 206
    assert await resp.read() == whole[1000:5000]
    resp = await client.get(
        "/images/ubuntu/amd64/ga-24.04/noble/stable/squashfs", headers={"If-None-Match": etag}
    )
    assert resp.status == 304


async def test_a_second_poll_is_one_conditional_request_answered_304_even_after_a_restart(
    fake_region: FakeRegion, tmp_path: Path
) -> None:
    """Nothing changed: one GET of index.sjson with If-None-Match, a 304, no file traffic."""
    data = tmp_path / "rack"
    async with open_rack(rack_config(fake_region, data)) as rack:
        await rack.link.register_once()
        first = await run_pull(rack.pull)
        etag = rack.pull.status.index_etag
        before = len(fake_region.stream_requests)
        second = await run_pull(rack.pull)
    assert (first.outcome, second.outcome) == ("ok", "unchanged")
    assert (second.files_fetched, second.bytes) == (0, 0)
    polls = fake_region.stream_requests[before:]
    assert [(r.path, r.status) for r in polls] == [(INDEX, 304)]
    assert polls[0].headers["If-None-Match"] == etag

    before = len(fake_region.stream_requests)
    async with open_rack(rack_config(fake_region, data)) as restarted:
        remembered = restarted.pull.status.status
        third = await run_pull(restarted.pull)
    assert (remembered.state, remembered.snapshot_id) == ("synced", first.region_snapshot)
    assert remembered.images
    assert third.outcome == "unchanged"
    assert [(r.path, r.status) for r in fake_region.stream_requests[before:]] == [(INDEX, 304)]
    assert third.snapshot_id == first.snapshot_id


async def test_a_tampered_index_is_refused_and_current_stays_as_it_was(
    fake_region: FakeRegion,
    tmp_path: Path,
    aiohttp_client: ClientFactory,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """A changed byte in the signed index fails verification; the old snapshot keeps serving."""
    data = tmp_path / "rack"
    async with open_rack(rack_config(fake_region, data)) as rack:
        await rack.link.register_once()
        first = await run_pull(rack.pull)
        fake_region.tamper(INDEX, lambda body: body.replace(b'"format"', b'"formaT"', 1))
        refused = await run_pull(rack.pull)
        status = rack.pull.status.status
    assert first.outcome == "ok"
    assert refused.outcome == "failed"
    assert refused.error is not None
    assert "BADSIG" in refused.error
    assert (data / "boot-resources" / "current").readlink().name == first.snapshot_id
    assert (status.state, status.error) == ("failed", refused.error)
    assert events(log_events, "pull_refused")[0]["reason"] == "tampered_payload"
    client = await serve(aiohttp_client, data)
    assert (await client.get("/images/lpxelinux.0")).status == 200


async def test_an_index_signed_by_another_key_is_refused(
    fake_region: FakeRegion,
    region: DaemonProcess,
    tmp_path: Path,
    gpg_stranger: ThrowawayKey,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """The same index, validly signed by a key that is not the pinned one, is not trusted."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{region.url}/MAAS/images-stream/{INDEX}".replace(".sjson", ".json")) as resp,
    ):
        forged = await asyncio.to_thread(clearsign, gpg_stranger, await resp.read())
    fake_region.tamper(INDEX, lambda _body: forged)
    async with open_rack(rack_config(fake_region, tmp_path / "rack")) as rack:
        await rack.link.register_once()
        refused = await run_pull(rack.pull)
    assert refused.outcome == "failed"
    assert events(log_events, "pull_refused")[0]["reason"] == "unknown_key"
    assert not (tmp_path / "rack" / "boot-resources" / "current").exists()


async def test_a_file_whose_sha256_differs_is_refused_and_only_it_is_fetched_again(
    fake_region: FakeRegion, tmp_path: Path, log_events: list[MutableMapping[str, Any]]
) -> None:
    """A corrupt squashfs fails the pull (no snapshot); once fixed, only it is fetched again."""
    data = tmp_path / "rack"
    fake_region.flip_byte(SQUASHFS, 1234)
    async with open_rack(rack_config(fake_region, data)) as rack:
        await rack.link.register_once()
        refused = await run_pull(rack.pull)
        assert refused.outcome == "failed"
        assert refused.error is not None
        assert "sha256 mismatch" in refused.error
        assert not (data / "boot-resources" / "current").exists()
        assert rack.pull.status.status.state == "failed"
        assert events(log_events, "pull_refused")[0]["reason"] == "sha256_mismatch"
        fetched = {r.path for r in fake_region.stream_requests if "/2025" in r.path}
        fake_region.clear_faults()
        before = len(fake_region.stream_requests)
        fixed = await run_pull(rack.pull)
    assert fixed.outcome == "ok"
    again = [r.path for r in fake_region.stream_requests[before:] if "/2025" in r.path]
    assert again == [SQUASHFS]
    assert SQUASHFS in fetched
    assert len(fetched) > 1


async def test_a_full_disk_is_refused_before_any_download(
    fake_region: FakeRegion, tmp_path: Path
) -> None:
    """Without room in the cache's filesystem the pull fails clearly and fetches nothing."""

    class FullStore(BlobStore):
        def _disk_usage(self) -> tuple[int, int]:
            return 1 << 20, 1 << 30

    data = tmp_path / "rack"
    async with (
        open_rack(rack_config(fake_region, data)) as rack,
        aiohttp.ClientSession() as session,
    ):
        await rack.link.register_once()
        store = FullStore(data / "cache")
        pull = replace(rack.pull, store=store, downloader=Downloader(session, store))
        result = await run_pull(pull)
    assert result.outcome == "failed"
    assert result.error is not None
    assert "not enough free space" in result.error
    assert not any("/2025" in r.path for r in fake_region.stream_requests)
    assert not (data / "boot-resources" / "current").exists()


def hostile_copy(product: dict[str, Any], release: str, names: dict[str, str]) -> dict[str, Any]:
    """``product`` as another release whose newest version holds files named ``names``
    (file name → the existing file of ``product`` whose bytes it claims)."""
    versions = product["versions"]
    newest = versions[max(versions)]
    items = {}
    for name, ftype in names.items():
        source = next(i for i in newest["items"].values() if i["ftype"] == ftype)
        stem = source["path"].rsplit("/", 2)[0].replace("/noble", f"/{release}")
        items[name] = {**source, "path": f"{stem}/20990101/{name}"}
    return {
        **product,
        "release": release,
        "release_codename": release,
        "versions": {"20990101": {**newest, "items": items}},
    }


async def test_hostile_names_refuse_their_whole_image_and_the_rest_is_published(
    region: DaemonProcess,
    tmp_path: Path,
    gpg_signer: ThrowawayKey,
    aiohttp_client: ClientFactory,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """A 300-character file name, a file named maas.meta and a dot-file each refuse their item
    with an event and leave their whole image out; every other image is laid out and served."""
    long_name = "k" * 300
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{region.url}/MAAS/images-stream/streams/v1/index.json") as resp:
            index = await resp.json()
        (entry,) = index["index"].values()
        products_json = entry["path"].replace(".sjson", ".json")
        async with session.get(f"{region.url}/MAAS/images-stream/{products_json}") as resp:
            products = await resp.json()
    noble = next(
        p
        for p in products["products"].values()
        if p.get("release") == "noble" and p.get("subarch") == "ga-24.04"
    )
    hostile = {
        "questing": {"boot-kernel": "boot-kernel", long_name: "squashfs"},
        "plucky": {"boot-kernel": "boot-kernel", "maas.meta": "boot-initrd"},
        "oracular": {"boot-kernel": "boot-kernel", ".squashfs": "squashfs"},
    }
    for release, names in hostile.items():
        products["products"][f"hostile:{release}"] = hostile_copy(noble, release, names)
    fake = FakeRegion(
        stream_origin=region.url,
        keyring=export_public(gpg_signer),
        fingerprint=gpg_signer.fingerprint,
    )
    await fake.start()
    try:
        for release, names in hostile.items():
            for name, item in products["products"][f"hostile:{release}"]["versions"]["20990101"][
                "items"
            ].items():
                fake.serve_as(item["path"], noble_path(noble, names[name]))
        signed_index = await asyncio.to_thread(clearsign, gpg_signer, json.dumps(index).encode())
        signed_products = await asyncio.to_thread(
            clearsign, gpg_signer, json.dumps(products).encode()
        )
        fake.tamper(INDEX, lambda _body: signed_index)
        fake.tamper(entry["path"], lambda _body: signed_products)
        data = tmp_path / "rack"
        async with open_rack(rack_config(fake, data)) as rack:
            await rack.link.register_once()
            result = await run_pull(rack.pull, reason="test")
    finally:
        await fake.close()
    assert result.outcome == "ok", result.error
    current = data / "boot-resources" / "current"
    assert (current / "ubuntu/amd64/ga-24.04/noble/stable/squashfs").is_file()
    assert (current / "lpxelinux.0").is_file()
    for release in hostile:
        assert not (current / f"ubuntu/amd64/ga-24.04/{release}").exists(), release
    meta = json.loads((current / "maas.meta").read_bytes())
    assert set(meta["ubuntu"]["amd64"]["ga-24.04"]["generic"]) == {"noble"}
    refused = {e["location"]: e["reason"] for e in events(log_events, "layout_item_skipped")}
    assert any(long_name in where and "300 bytes" in why for where, why in refused.items())
    assert any("items[maas.meta]" in where for where in refused)
    assert any(
        "items[.squashfs]" in where and "starts with '.'" in why for where, why in refused.items()
    )
    left_out = {e["product"] for e in events(log_events, "layout_version_skipped")}
    assert left_out == {f"hostile:{release}" for release in hostile}
    client = await serve(aiohttp_client, data)
    assert (
        await client.get("/images/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel")
    ).status == 200


def noble_path(product: dict[str, Any], ftype: str) -> str:
    """The stream path of ``product``'s newest file of type ``ftype``."""
    versions = product["versions"]
    newest = versions[max(versions)]
    path: str = next(i["path"] for i in newest["items"].values() if i["ftype"] == ftype)
    return path
