"""MAAS's OS and naming settings through ``get_config``/``set_config``, checked as MAAS checks them.

``maas_name``, the default and commissioning OS and release, the minimum HWE
kernel and MAAS 3.8's ``boot_images_import_interval_minutes`` (applied to the
running schedule at once); unknown names get MAAS's exact error.
"""

from __future__ import annotations

import hashlib
import socket
from datetime import timedelta
from typing import Any

import pytest

from region.api.maas_config import PARSERS
from region.db import config as repo_config
from region.db import imports as repo_import
from region.db.imports import WantedFile, WantedSet
from region.images.scheduler import AutoImport
from tests.integration.region.api_harness import Region


async def get(api_region: Region, name: str, **kwargs: Any) -> Any:
    """GET maas/?op=get_config&name=<name>."""
    return await api_region.call(
        "GET", "/maas/", query={"op": "get_config", "name": name}, **kwargs
    )


async def put(api_region: Region, name: str, value: str) -> Any:
    """POST maas/?op=set_config with name and value, as the maas CLI sends it."""
    return await api_region.call(
        "POST", "/maas/", query={"op": "set_config"}, fields=[("name", name), ("value", value)]
    )


def synced(
    name: str, arch: str, *, title: str, eol: str | None, squashfs: bool = True
) -> WantedSet:
    """A synced image whose files the store holds (a complete set)."""
    files = [("boot-kernel", "boot-kernel"), ("boot-initrd", "boot-initrd")]
    if squashfs:
        files.append(("squashfs", "squashfs"))
    extra: dict[str, Any] = {"release_title": title, "subarches": arch.split("/")[1]}
    if eol is not None:
        extra["support_eol"] = eol
    return WantedSet(
        name=name,
        architecture=arch,
        kflavor="generic",
        bootloader_type=None,
        rolling=False,
        extra=extra,
        version="20250101",
        label="stable",
        files=tuple(
            WantedFile(
                filename=filename,
                filetype=filetype,
                sha256=hashlib.sha256(f"{name}{arch}{filename}".encode()).hexdigest(),
                size=10,
            )
            for filename, filetype in files
        ),
    )


async def hold(api_region: Region, *images: WantedSet) -> None:
    """Record ``images`` as fully imported."""
    have = {f.sha256: f.size for ws in images for f in ws.files}
    await repo_import.write_wanted(api_region.ctx.db, images, have)


@pytest.fixture
async def held(api_region: Region) -> Region:
    """A region holding ubuntu noble (ga and hwe kernels) and jammy, and centos 9 (no squashfs)."""
    await hold(
        api_region,
        synced("ubuntu/noble", "amd64/ga-24.04", title="24.04 LTS", eol="2029-05-31"),
        synced("ubuntu/noble", "amd64/hwe-24.04", title="24.04 LTS", eol="2029-05-31"),
        synced("ubuntu/jammy", "amd64/ga-22.04", title="22.04 LTS", eol="2027-04-21"),
        synced("centos/centos9", "amd64/generic", title="CentOS 9", eol=None, squashfs=False),
    )
    return api_region


async def test_the_new_names_read_their_maas_defaults(api_region: Region) -> None:
    """Never set: maas_name is the host name, the OS settings ubuntu/noble, the interval 60."""
    expected = {
        "maas_name": socket.gethostname(),
        "default_osystem": "ubuntu",
        "default_distro_series": "noble",
        "commissioning_osystem": "ubuntu",
        "commissioning_distro_series": "noble",
        "default_min_hwe_kernel": "",
        "boot_images_import_interval_minutes": 60,
    }
    for name, value in expected.items():
        resp = await get(api_region, name, key=api_region.user)
        assert resp.status == 200, name
        assert await resp.json() == value, name


async def test_maas_name_is_any_non_empty_text(api_region: Region) -> None:
    """A name is stored as given; an empty one is MAAS's required-field error."""
    assert (await put(api_region, "maas_name", "lab region")).status == 200
    assert await (await get(api_region, "maas_name")).json() == "lab region"
    empty = await put(api_region, "maas_name", "")
    assert empty.status == 400
    assert await empty.json() == {"maas_name": ["This field is required."]}


async def test_os_settings_take_what_the_region_holds(held: Region) -> None:
    """Default OS/release, commissioning release and minimum kernel accept held choices."""
    for name, value in (
        ("default_osystem", "centos"),
        ("default_distro_series", "centos9"),
        ("commissioning_distro_series", "jammy"),
        ("default_min_hwe_kernel", "ga-22.04"),
        ("commissioning_osystem", "ubuntu"),
    ):
        resp = await put(held, name, value)
        assert (resp.status, await resp.text()) == (200, "OK"), name
        assert await repo_config.get_config(held.ctx.db, name) == value


async def test_os_settings_refuse_other_values_with_maas_choice_text(held: Region) -> None:
    """An unheld value lists the valid ones, MAAS's wording and two spaces."""
    cases = {
        "default_osystem": "'plan9' is not a valid osystem.  It should be one of: "
        "'centos', 'ubuntu'.",
        "default_distro_series": "'plan9' is not a valid release.  It should be one of: "
        "'jammy', 'noble'.",
        "commissioning_distro_series": "'plan9' is not a valid commissioning_distro_series.  "
        "It should be one of: 'jammy', 'noble'.",
        "default_min_hwe_kernel": "'plan9' is not a valid default_min_hwe_kernel.  "
        "It should be one of: '', 'ga-24.04', 'hwe-24.04'.",
        "commissioning_osystem": "'plan9' is not a valid commissioning_osystem.  "
        "It should be one of: 'ubuntu'.",
    }
    for name, message in cases.items():
        resp = await put(held, name, "plan9")
        assert resp.status == 400, name
        assert await resp.json() == {name: [message]}


async def test_a_release_without_images_is_refused_as_maas_does(api_region: Region) -> None:
    """Nothing held yet: the only choice is MAAS's placeholder '---'."""
    resp = await put(api_region, "default_osystem", "ubuntu")
    assert resp.status == 400
    assert await resp.json() == {
        "default_osystem": ["'ubuntu' is not a valid osystem.  It should be one of: '---'."]
    }


async def test_unknown_names_get_maas_exact_error(api_region: Region) -> None:
    """get and set: 400 keyed by the name, listing every valid setting in order."""
    listed = ", ".join(PARSERS)
    for resp in (await get(api_region, "no_such"), await put(api_region, "no_such", "x")):
        assert resp.status == 400
        assert await resp.json() == {
            "no_such": [f"no_such is not a valid config setting (valid settings are: {listed})."]
        }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", "Enter a whole number."),
        ("0", "Ensure this value is greater than or equal to 1."),
        ("20000", "Ensure this value is less than or equal to 10080."),
    ],
)
async def test_a_bad_interval_is_refused(api_region: Region, text: str, message: str) -> None:
    """The interval is a whole number of minutes, 1 to a week."""
    resp = await put(api_region, "boot_images_import_interval_minutes", text)
    assert resp.status == 400
    assert await resp.json() == {"boot_images_import_interval_minutes": [message]}


async def test_the_interval_applies_to_the_running_schedule_at_once(api_region: Region) -> None:
    """set_config reschedules the auto-import job with the new interval, no restart."""
    schedule = AutoImport(api_region.ctx.importer, interval_minutes=60, enabled=_false)
    schedule.start()
    api_region.ctx.schedule = schedule
    try:
        resp = await put(api_region, "boot_images_import_interval_minutes", "15")
        assert resp.status == 200
        assert schedule.job().trigger.interval == timedelta(minutes=15)
        assert await (await get(api_region, "boot_images_import_interval_minutes")).json() == 15
    finally:
        schedule.shutdown()


async def _false() -> bool:
    return False
