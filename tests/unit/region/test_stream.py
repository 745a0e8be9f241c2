"""The region stream's products: MAAS's legacy names and paths, one version per complete set."""

from __future__ import annotations

from typing import Any

from region.db.resources import FileRow, ResourceRow, SetRow
from region.images.publish import stream_products


def _resource(name: str, arch: str, **kw: Any) -> ResourceRow:
    fields: dict[str, Any] = {
        "id": 1,
        "rtype": 0,
        "name": name,
        "architecture": arch,
        "kflavor": "generic",
        "bootloader_type": None,
        "rolling": False,
        "base_image": "",
        "extra": {},
    }
    fields.update(kw)
    return ResourceRow(**fields)


def _set(version: str, *files: str, label: str = "stable") -> SetRow:
    return SetRow(
        id=1,
        version=version,
        label=label,
        files=tuple(
            FileRow(
                filename=f,
                filetype=f,
                sha256=f"{i:064x}",
                size=10,
                bytes_done=10,
                extra={"kpackage": "linux-generic"},
            )
            for i, f in enumerate(files)
        ),
    )


def test_products_are_named_and_pathed_as_maas_served_them() -> None:
    """``maas:boot:<os>:<arch>:<subarch>:<series>``; files under os/arch/subarch/series/version."""
    resource = _resource(
        "ubuntu/noble",
        "amd64/ga-24.04",
        extra={
            "subarches": "generic,ga-24.04",
            "title": "Ubuntu 24.04 LTS",
            "support_eol": "2029-05-31",
            "label": "stable",
        },
    )
    products, blobs = stream_products([(resource, [_set("20250718", "boot-kernel")])])
    product = products["maas:boot:ubuntu:amd64:ga-24.04:noble"]
    assert dict(product.attrs) == {
        "os": "ubuntu",
        "arch": "amd64",
        "subarch": "ga-24.04",
        "release": "noble",
        "version": "noble",
        "label": "stable",
        "kflavor": "generic",
        "subarches": "generic,ga-24.04",
        "title": "Ubuntu 24.04 LTS",
        "support_eol": "2029-05-31",
    }
    item = product.versions["20250718"].items["boot-kernel"]
    assert item.path == "ubuntu/amd64/ga-24.04/noble/20250718/boot-kernel"
    assert dict(item.attrs) == {"ftype": "boot-kernel", "kpackage": "linux-generic"}
    assert blobs == {item.path: item.sha256}


def test_every_complete_set_is_a_version_and_the_label_is_the_newest_sets() -> None:
    """Two complete sets give two versions; the product label comes from the newer one."""
    sets = [_set("20250101", "squashfs", label="candidate"), _set("20250201", "squashfs")]
    products, _blobs = stream_products([(_resource("ubuntu/noble", "amd64/generic"), sets)])
    product = products["maas:boot:ubuntu:amd64:generic:noble"]
    assert set(product.versions) == {"20250101", "20250201"}
    assert product.attrs["label"] == "stable"


def test_bootloaders_carry_their_type_and_uploads_are_published_as_custom() -> None:
    """A bootloader has ``bootloader-type``; an upload with a bare name has os ``custom``."""
    grub = _resource("grub-efi-signed/uefi", "amd64/generic", bootloader_type="uefi")
    upload = _resource("mine", "amd64/generic", rtype=2, kflavor=None)
    products, _blobs = stream_products(
        [(grub, [_set("1.0", "grub.tar.xz")]), (upload, [_set("20250101", "root-tgz")])]
    )
    assert (
        products["maas:boot:grub-efi-signed:amd64:generic:uefi"].attrs["bootloader-type"] == "uefi"
    )
    assert "maas:boot:custom:amd64:generic:mine" in products


def test_a_resource_whose_names_would_escape_the_stream_is_left_out() -> None:
    """A release of ``..`` cannot become a path: the resource is skipped, not published."""
    products, blobs = stream_products(
        [(_resource("ubuntu/..", "amd64/generic"), [_set("1", "squashfs")])]
    )
    assert products == {}
    assert blobs == {}
