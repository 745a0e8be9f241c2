"""/images/ serves only the current, complete snapshot; /healthz tells whether there is one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from common.storage.blobstore import BlobStore
from common.storage.snapshot import SnapshotPublisher
from rack import web as rack_web

ClientFactory = Callable[..., Any]
KERNEL = "ubuntu/amd64/ga-24.04/noble/stable/boot-kernel"


@dataclass
class Problem:
    """A stand-in region link that reports what blocks syncing."""

    problem: str | None


async def client_for(
    aiohttp_client: ClientFactory, root: Path, problem: str | None = None
) -> TestClient[Any, Any]:
    """A client of the rack's routes over the boot resources at ``root``."""
    app = web.Application()
    app[rack_web.BOOT_RESOURCES] = root
    app[rack_web.PROBLEM_SOURCE] = Problem(problem)
    rack_web.add_routes(app)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def publish(root: Path, files: dict[str, bytes]) -> str:
    """Publish ``files`` as a snapshot under ``root``; return its id."""
    store = BlobStore(root.parent / "cache")
    publisher = SnapshotPublisher(root, store)
    async with publisher.build() as builder:
        for path, data in files.items():
            await builder.link_blob(await store.ingest_bytes(data), path)
    assert builder.result is not None
    return builder.result.id


async def test_before_the_first_sync_images_are_404_and_healthz_is_503_with_the_reason(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """No snapshot: nothing is served, and the health check says why."""
    client = await client_for(
        aiohttp_client, tmp_path / "boot-resources", problem="the region refused the shared secret"
    )
    assert (await client.get(f"/images/{KERNEL}")).status == 404
    resp = await client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["reason"] == (
        "no image snapshot synced yet: the region refused the shared secret"
    )
    assert (await client.get("/livez")).status == 200


async def test_files_of_the_current_snapshot_are_served_with_range_and_etag(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """A full GET, a Range GET, a HEAD and a conditional GET all behave like a file server."""
    data = bytes(range(256)) * 64
    root = tmp_path / "boot-resources"
    snapshot = await publish(root, {KERNEL: data})
    client = await client_for(aiohttp_client, root)
    resp = await client.get(f"/images/{KERNEL}")
    assert resp.status == 200
    assert await resp.read() == data
    assert resp.headers[rack_web.SNAPSHOT_HEADER] == snapshot
    resp = await client.get(f"/images/{KERNEL}", headers={"Range": "bytes=100-299"})
    assert resp.status == 206
    assert await resp.read() == data[100:300]
    etag = resp.headers["ETag"]
    assert (await client.get(f"/images/{KERNEL}", headers={"If-None-Match": etag})).status == 304
    head = await client.head(f"/images/{KERNEL}")
    assert head.headers["Content-Length"] == str(len(data))
    health = await client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["snapshot"] == snapshot


async def test_escapes_hidden_files_and_directories_are_not_served(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """Dot-dot and hidden names (the snapshot manifest) answer 404; a directory without its
    trailing slash is redirected to its listing."""
    root = tmp_path / "boot-resources"
    await publish(root, {KERNEL: b"kernel"})
    (tmp_path / "secret").write_text("outside")
    client = await client_for(aiohttp_client, root)
    for path in (
        "/images/../../secret",
        "/images/%2E%2E/%2E%2E/secret",
        "/images/.bootsync-manifest.json",
        "/images/ubuntu//amd64",
    ):
        assert (await client.get(path)).status == 404, path
    moved = await client.get("/images/ubuntu/amd64", allow_redirects=False)
    assert (moved.status, moved.headers["Location"]) == (301, "/images/ubuntu/amd64/")


def test_safe_relative_refuses_what_could_escape() -> None:
    """Only plain relative paths without hidden or empty segments pass."""
    assert rack_web.safe_relative("a/b/c") is not None
    for bad in ("", "/a", "a/../b", "..", "a/.b", "a//b", "a\\b", "a\x00b", "."):
        assert rack_web.safe_relative(bad) is None, bad
