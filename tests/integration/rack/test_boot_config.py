"""Boot config templates: rendered per request against the served snapshot, over TFTP and HTTP.

The snapshot is one a rack pulled from a real region; the templates are the
shipped examples of etc/boot/ plus a few written here. TFTP is fetched with
curl (``tftp://``), HTTP with aiohttp against the rack's routes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.errors import ConfigError
from rack import web as rack_web
from rack.app import open_rack
from rack.bootconfig import (
    MAX_TEMPLATE_BYTES,
    BootConfig,
    RenderError,
    image_variables,
    rack_variables,
    render,
    render_boot_file,
)
from rack.config import load_config
from rack.pull import run_pull
from rack.tftp import packets
from rack.tftp.server import TftpServer, TftpSettings
from tests.fakes.region import FakeRegion
from tests.integration.rack.harness import rack_config
from tests.integration.rack.tftp_client import fetch

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "etc" / "boot"
KERNEL = "ubuntu/amd64/ga-24.04/noble/stable/boot-kernel"
INITRD = "ubuntu/amd64/ga-24.04/noble/stable/boot-initrd"
SQUASHFS = "ubuntu/amd64/ga-24.04/noble/stable/squashfs"
CURL = shutil.which("curl")


def meta_of(*images: tuple[str, str, str, str, str]) -> dict[str, Any]:
    """A maas.meta mapping holding kernel, initrd and squashfs for (arch, subarch, kflavor,
    release, release_title) of each image."""
    meta: dict[str, Any] = {}
    for arch, subarch, kflavor, release, title in images:
        leaf = meta.setdefault("ubuntu", {}).setdefault(arch, {}).setdefault(subarch, {})
        node = leaf.setdefault(kflavor, {}).setdefault(release, {}).setdefault("stable", {})
        node["release_title"] = title
        node["files"] = {n: {"sha256": "0", "size": 1} for n in ("boot-kernel", "boot-initrd")}
        node["files"]["squashfs"] = {"sha256": "0", "size": 1}
    return meta


def test_render_replaces_every_placeholder_and_copies_the_rest() -> None:
    """Spaces inside the braces are optional and text outside them is copied unchanged."""
    text = "kernel {{images_url}}/{{ ubuntu.newest.amd64.kernel }} ${net0/ip} {x}\n"
    out = render(
        text,
        {"images_url": "http://r:5248/images", "ubuntu.newest.amd64.kernel": "k"},
        template="boot.ipxe",
    )
    assert out == "kernel http://r:5248/images/k ${net0/ip} {x}\n"


def test_an_unknown_variable_fails_the_whole_render_naming_each_one() -> None:
    """Unknown names are listed once each in the error; nothing is returned half-rendered."""
    with pytest.raises(RenderError) as caught:
        render(
            "{{ rack_url }} {{nope}} {{ nope }} {{ also.nope }}", {"rack_url": "u"}, template="t"
        )
    assert caught.value.names == ("nope", "also.nope")
    assert str(caught.value) == "boot config t: unknown variable: nope, also.nope"


def test_a_placeholder_that_is_no_name_is_refused_not_evaluated() -> None:
    """``{{ 1+1 }}`` or ``{{ a b }}`` is an error: the renderer runs no expressions."""
    with pytest.raises(RenderError) as caught:
        render("{{ 1+1 }} {{ a b }}", {"a": "x"}, template="t")
    assert caught.value.reason == "not a variable name"
    assert caught.value.names == ("{{ 1+1 }}", "{{ a b }}")


def test_the_newest_release_per_arch_wins_with_ga_generic_before_hwe() -> None:
    """22.04 loses to 24.04; the ga- subarch beats hwe- of the same release; arches are apart."""
    meta = meta_of(
        ("amd64", "ga-22.04", "generic", "jammy", "22.04 LTS"),
        ("amd64", "hwe-24.04", "generic", "noble", "24.04 LTS"),
        ("amd64", "ga-24.04", "generic", "noble", "24.04 LTS"),
        ("arm64", "ga-22.04", "generic", "jammy", "22.04 LTS"),
    )
    found = image_variables(meta)
    assert found["ubuntu.newest.amd64.kernel"] == KERNEL
    assert found["ubuntu.newest.amd64.initrd"] == INITRD
    assert found["ubuntu.newest.amd64.squashfs"] == SQUASHFS
    assert found["ubuntu.newest.amd64.release"] == "noble"
    assert found["ubuntu.newest.arm64.kernel"] == "ubuntu/arm64/ga-22.04/jammy/stable/boot-kernel"
    assert found["ubuntu.newest.arm64.subarch"] == "ga-22.04"


def test_rack_variables_split_the_host_from_the_url() -> None:
    """``rack_host`` drops the scheme and port (IPv6 keeps its brackets)."""
    assert rack_variables("http://10.0.2.2:5248/") == {
        "rack_url": "http://10.0.2.2:5248",
        "rack_host": "10.0.2.2",
        "images_url": "http://10.0.2.2:5248/images",
    }
    assert rack_variables("http://[fd00::1]:5248")["rack_host"] == "[fd00::1]"


def test_the_rack_url_is_the_address_the_client_reached_unless_advertised() -> None:
    """HTTP takes the Host header and TFTP its local address; an advertise URL wins."""
    boot = BootConfig(templates_dir=None, rack_url="http://rack:5248", http_port=5248)
    assert boot.url_for_http("http", "10.0.2.2:5248") == "http://10.0.2.2:5248"
    assert boot.url_for_http("http", "evil\r\nhost") == "http://rack:5248"
    assert boot.url_for_tftp("192.0.2.7") == "http://192.0.2.7:5248"
    advertised = BootConfig(
        templates_dir=None, rack_url="http://rack.example:80", http_port=5248, advertised=True
    )
    assert advertised.url_for_http("http", "10.0.2.2:5248") == "http://rack.example:80"
    assert advertised.url_for_tftp("192.0.2.7") == "http://rack.example:80"


@pytest.fixture
async def boot_resources(fake_region: FakeRegion, tmp_path: Path) -> Path:
    """boot-resources/ of a rack after one pull from the region."""
    data = tmp_path / "rack"
    async with open_rack(rack_config(fake_region, data)) as rack:
        await rack.link.register_once()
        result = await run_pull(rack.pull, reason="test")
    assert result.outcome == "ok", result.error
    return data / "boot-resources"


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """The shipped examples, plus ``broken.cfg`` (an unknown variable) and ``plain.txt``."""
    root = tmp_path / "templates"
    shutil.copytree(EXAMPLES, root)
    (root / "broken.cfg").write_text("kernel {{ ubuntu.newest.amd64.kernel }} {{ no_such }}\n")
    (root / "plain.txt").write_text("served from {{rack_url}} ({{ rack_host }})\n")
    return root


def boot_config(templates: Path) -> BootConfig:
    """A rack that listens on every address, port 5248, with these templates."""
    return BootConfig(templates_dir=templates, rack_url="http://rack:5248", http_port=5248)


@pytest.fixture
async def tftp(boot_resources: Path, templates: Path) -> AsyncIterator[TftpServer]:
    """A TFTP server of ``boot_resources`` with ``templates``, on a free UDP port."""
    server = TftpServer(
        boot_resources,
        TftpSettings(host="127.0.0.1", port=0, timeout_s=0.5),
        boot=boot_config(templates),
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def curl_tftp(port: int, name: str, out: Path) -> tuple[int, str]:
    """Fetch ``name`` with curl over TFTP into ``out``: its exit status and stderr."""
    assert CURL is not None
    proc = await asyncio.create_subprocess_exec(
        CURL,
        "-sS",
        "-o",
        str(out),
        f"tftp://127.0.0.1:{port}/{name}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


@pytest.mark.skipif(CURL is None, reason="curl missing: run `make tftp-clients`")
async def test_tftp_serves_the_examples_rendered_and_refuses_a_broken_template(
    tftp: TftpServer, tmp_path: Path
) -> None:
    """grub.cfg, pxelinux.cfg/default and boot.ipxe come rendered with the snapshot's
    paths and the address TFTP was reached on; an unknown variable is a TFTP error naming it."""
    port = tftp.port
    code, err = await curl_tftp(port, "grub/grub.cfg", tmp_path / "grub.cfg")
    assert code == 0, err
    grub = (tmp_path / "grub.cfg").read_text()
    assert f"linux /{KERNEL} ip=dhcp root=squash:http://127.0.0.1:5248/images/{SQUASHFS}" in grub
    assert f"initrd /{INITRD}" in grub
    assert "{{" not in grub
    code, err = await curl_tftp(port, "/pxelinux.cfg/default", tmp_path / "default")
    assert code == 0, err
    pxe = (tmp_path / "default").read_text()
    assert f"KERNEL {KERNEL}\n" in pxe
    assert f"APPEND initrd={INITRD} " in pxe
    code, err = await curl_tftp(port, "boot.ipxe", tmp_path / "boot.ipxe")
    assert code == 0, err
    assert f"kernel http://127.0.0.1:5248/images/{KERNEL} " in (tmp_path / "boot.ipxe").read_text()
    code, err = await curl_tftp(port, "broken.cfg", tmp_path / "broken.cfg")
    assert code != 0
    assert not (tmp_path / "broken.cfg").exists()
    got = await asyncio.to_thread(fetch, port, "broken.cfg")  # curl does not show the message
    assert got.data == b""
    assert got.error == (packets.NOT_DEFINED, "boot config broken.cfg: unknown variable: no_such")
    assert tftp.stats.errors == {"render_failed": 2}
    code, err = await curl_tftp(port, KERNEL, tmp_path / "kernel")  # images still served
    assert code == 0, err
    assert (tmp_path / "kernel").read_bytes() == (boot_resources_file(tftp, KERNEL)).read_bytes()


def boot_resources_file(tftp: TftpServer, rel: str) -> Path:
    """The file ``rel`` of the snapshot ``tftp`` serves now."""
    return tftp.boot_resources / "current" / rel


async def http_client(
    aiohttp_client: ClientFactory, boot_resources: Path, templates: Path
) -> TestClient[Any, Any]:
    """A client of the rack's routes over ``boot_resources`` with ``templates``."""
    app = web.Application()
    app[rack_web.BOOT_RESOURCES] = boot_resources
    app[rack_web.BOOT_CONFIG] = boot_config(templates)
    rack_web.add_routes(app)
    return await aiohttp_client(app)


async def test_http_serves_templates_rendered_for_the_host_asked_and_500s_a_broken_one(
    aiohttp_client: ClientFactory,
    boot_resources: Path,
    templates: Path,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """/images/boot.ipxe names the Host the client used; a broken template is a 500 naming
    the variable and an error event, and a name no template has is still a snapshot file."""
    client = await http_client(aiohttp_client, boot_resources, templates)
    resp = await client.get("/images/boot.ipxe", headers={"Host": "10.0.2.2:5248"})
    assert resp.status == 200
    body = await resp.text()
    assert body.startswith("#!ipxe\n")
    assert f"kernel http://10.0.2.2:5248/images/{KERNEL} initrd=boot-initrd " in body
    assert f"initrd --name boot-initrd http://10.0.2.2:5248/images/{INITRD}\n" in body
    snapshot = (boot_resources / "current").resolve().name
    assert resp.headers[rack_web.SNAPSHOT_HEADER] == snapshot
    resp = await client.get("/images/plain.txt", headers={"Host": "rack.example:8080"})
    assert await resp.text() == "served from http://rack.example:8080 (rack.example)\n"
    resp = await client.get("/images/broken.cfg")
    assert resp.status == 500
    assert await resp.text() == "boot config broken.cfg: unknown variable: no_such\n"
    failed = [e for e in log_events if e["event"] == "boot_config_render_failed"]
    assert [(e["template"], e["names"], e["snapshot"]) for e in failed] == [
        ("broken.cfg", ["no_such"], snapshot)
    ]
    resp = await client.get(f"/images/{KERNEL}")
    assert resp.status == 200
    assert await resp.read() == (boot_resources / "current" / KERNEL).read_bytes()


async def test_each_request_renders_against_the_snapshot_served_at_that_moment(
    aiohttp_client: ClientFactory, boot_resources: Path, templates: Path
) -> None:
    """When ``current`` moves to a snapshot whose newest image differs, the next request
    names that image: nothing is cached across snapshots."""
    client = await http_client(aiohttp_client, boot_resources, templates)
    resp = await client.get("/images/boot.ipxe")
    assert KERNEL in await resp.text()
    old = (boot_resources / "current").resolve()
    new = old.parent / "rebuilt"
    shutil.copytree(old, new, symlinks=True)
    meta = json.loads((new / "maas.meta").read_text())
    amd64 = meta["ubuntu"]["amd64"]
    noble = amd64["ga-24.04"]["generic"]["noble"]["stable"]
    amd64["ga-26.04"] = {"generic": {"resolute": {"stable": noble | {"release_title": "26.04"}}}}
    (new / "maas.meta").write_text(json.dumps(meta))
    link = boot_resources / "current.new"
    link.symlink_to((boot_resources / "current").readlink().parent / new.name)
    link.replace(boot_resources / "current")
    resp = await client.get("/images/boot.ipxe")
    assert resp.headers[rack_web.SNAPSHOT_HEADER] == "rebuilt"
    assert "ubuntu/amd64/ga-26.04/resolute/stable/boot-kernel" in await resp.text()


async def test_no_templates_dir_serves_no_boot_config(
    aiohttp_client: ClientFactory, boot_resources: Path
) -> None:
    """Without ``[boot] templates_dir`` a boot config name is a plain 404."""
    app = web.Application()
    app[rack_web.BOOT_RESOURCES] = boot_resources
    app[rack_web.BOOT_CONFIG] = BootConfig(templates_dir=None, rack_url="http://r", http_port=1)
    rack_web.add_routes(app)
    client = await aiohttp_client(app)
    resp = await client.get("/images/boot.ipxe")
    assert resp.status == 404


async def test_a_template_link_out_of_the_directory_or_a_hidden_name_is_not_served(
    aiohttp_client: ClientFactory, boot_resources: Path, templates: Path, tmp_path: Path
) -> None:
    """A symlink leaving ``templates_dir`` is no template, and hidden names are refused."""
    secret = tmp_path / "secret.cfg"
    secret.write_text("not for machines\n")
    (templates / "leak.cfg").symlink_to(secret)
    (templates / ".hidden.cfg").write_text("hidden\n")
    client = await http_client(aiohttp_client, boot_resources, templates)
    for name in ("leak.cfg", ".hidden.cfg", "grub/../.hidden.cfg"):
        resp = await client.get(f"/images/{name}")
        assert resp.status == 404, name


def test_templates_dir_is_read_from_the_boot_table_and_must_be_absolute(tmp_path: Path) -> None:
    """``[boot] templates_dir`` becomes the config's Path; a relative one is refused by key."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    config = tmp_path / "rackd.toml"
    config.write_text(f'[region]\nsecret_file = "{secret}"\n[boot]\ntemplates_dir = "{EXAMPLES}"\n')
    assert load_config(config).boot_templates_dir == EXAMPLES
    config.write_text(f'[region]\nsecret_file = "{secret}"\n')
    assert load_config(config).boot_templates_dir is None
    config.write_text(f'[region]\nsecret_file = "{secret}"\n[boot]\ntemplates_dir = "boot"\n')
    with pytest.raises(ConfigError, match=r"boot\.templates_dir: must be an absolute path"):
        load_config(config)


async def test_a_template_not_utf8_or_too_big_is_refused_whole(tmp_path: Path) -> None:
    """Binary or oversized templates raise RenderError with the reason; none is sent cut."""
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "maas.meta").write_text("{}")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "binary.cfg").write_bytes(b"\xff\xfe{{ rack_url }}")
    (templates / "huge.cfg").write_bytes(b"#" * (MAX_TEMPLATE_BYTES + 1))
    (templates / "images.cfg").write_text("{{ ubuntu.newest.amd64.kernel }}")
    boot = boot_config(templates)
    reasons = {}
    for name in ("binary.cfg", "huge.cfg", "images.cfg"):
        with pytest.raises(RenderError) as caught:
            await render_boot_file(boot, name, snapshot, "http://r:5248")
        reasons[name] = str(caught.value)
    assert reasons == {
        "binary.cfg": "boot config binary.cfg: the template is not UTF-8 text",
        "huge.cfg": f"boot config huge.cfg: the template is over {MAX_TEMPLATE_BYTES} bytes",
        "images.cfg": "boot config images.cfg: unknown variable: ubuntu.newest.amd64.kernel",
    }
    assert await render_boot_file(boot, "missing.cfg", snapshot, "http://r:5248") is None
