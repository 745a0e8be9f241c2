"""/images/ and every directory below it list their entries, like nginx's autoindex."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from rack import web as rack_web

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


async def serve(aiohttp_client: ClientFactory, root: Path) -> TestClient[Any, Any]:
    """A client of the rack's routes over boot-resources ``root``."""
    app = web.Application()
    app[rack_web.BOOT_RESOURCES] = root
    rack_web.add_routes(app)
    return await aiohttp_client(app)


def links(page: str) -> list[str]:
    """The hrefs of a listing, in order."""
    return re.findall(r'<a href="([^"]*)">', page)


async def test_directories_list_their_entries_and_bootloaders_are_reachable(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """The root lists directories (with '/') then files, hidden files left out; a subdirectory
    links back up; bootx64.efi is served at the root and under bootloader/."""
    root = tmp_path / "boot-resources"
    snap = root / "snapshots" / "s1"
    (snap / "ubuntu/amd64/ga-24.04/noble/stable").mkdir(parents=True)
    (snap / "ubuntu/amd64/ga-24.04/noble/stable/boot-kernel").write_bytes(b"k" * 10)
    (snap / "bootloader/uefi/amd64").mkdir(parents=True)
    (snap / "bootloader/uefi/amd64/bootx64.efi").write_bytes(b"shim")
    (snap / "bootx64.efi").symlink_to("bootloader/uefi/amd64/bootx64.efi")
    (snap / "a file & <name>").write_bytes(b"odd")
    (snap / "maas.meta").write_bytes(b"{}")
    (snap / ".bootsync-manifest.json").write_bytes(b"{}")
    (root / "current").symlink_to("snapshots/s1")
    client = await serve(aiohttp_client, root)

    top = await client.get("/images/")
    assert top.status == 200
    assert top.content_type == "text/html"
    assert top.headers[rack_web.SNAPSHOT_HEADER] == "s1"
    page = await top.text()
    assert "Index of /images/" in page
    assert links(page) == [
        "bootloader/",
        "ubuntu/",
        "a%20file%20%26%20%3Cname%3E",
        "bootx64.efi",
        "maas.meta",
    ]
    assert "a file &amp; &lt;name&gt;" in page

    deeper = await client.get("/images/ubuntu/amd64/ga-24.04/noble/stable/")
    assert links(await deeper.text()) == ["../", "boot-kernel"]
    redirected = await client.get("/images/bootloader/uefi")
    assert redirected.url.path == "/images/bootloader/uefi/"
    assert links(await redirected.text()) == ["../", "amd64/"]

    for path in ("/images/bootx64.efi", "/images/bootloader/uefi/amd64/bootx64.efi"):
        resp = await client.get(path)
        assert (resp.status, await resp.read()) == (200, b"shim"), path
    assert (await client.get("/images/boot-kernel/")).status == 404
    assert (await client.get("/images/a%20file%20%26%20%3Cname%3E")).status == 200
