"""Stream items land where MAAS racks put them; clashes and unsafe names are handled."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from common.rackproto import RackImage
from rack.layout import images_from_meta, plan_layout, segment_problem
from simplestreams import Item, Product, ProductList, Version

CONTENT_ID = "com.bootsync.region:v1:download"


def sha(text: str) -> str:
    """A stable fake sha256 for ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()


def product(
    name: str, attrs: dict[str, Any], versions: dict[str, list[str]], prefix: str
) -> Product:
    """A product whose versions hold items named as listed, under ``prefix/<version>/``."""
    return Product(
        name=name,
        attrs=attrs,
        versions={
            v: Version(
                name=v,
                items={
                    f: Item(
                        name=f,
                        path=f"{prefix}/{v}/{f}",
                        sha256=sha(f"{prefix}/{v}/{f}"),
                        size=10,
                        attrs={"ftype": f},
                    )
                    for f in files
                },
            )
            for v, files in versions.items()
        },
    )


def ubuntu(
    subarch: str,
    *,
    kflavor: str = "generic",
    rolling: bool = False,
    versions: dict[str, list[str]] | None = None,
) -> Product:
    """A noble amd64 kernel product as the region publishes it."""
    attrs: dict[str, Any] = {
        "os": "ubuntu",
        "arch": "amd64",
        "subarch": subarch,
        "release": "noble",
        "label": "stable",
        "kflavor": kflavor,
        "subarches": f"generic,{subarch}",
        "release_title": "24.04 LTS",
    }
    if rolling:
        attrs["rolling"] = True
    return product(
        f"maas:boot:ubuntu:amd64:{subarch}:noble",
        attrs,
        versions or {"20250718": ["boot-kernel", "boot-initrd", "squashfs"]},
        f"ubuntu/amd64/{subarch}/noble",
    )


def bootloader(os_name: str, btype: str, arch: str, files: list[str]) -> Product:
    """A bootloader product as the region publishes it."""
    return product(
        f"maas:boot:{os_name}:{arch}:generic:{btype}",
        {
            "os": os_name,
            "arch": arch,
            "subarch": "generic",
            "release": btype,
            "label": "stable",
            "kflavor": "generic",
            "bootloader-type": btype,
        },
        {"20250718.0": files},
        f"{os_name}/{arch}/generic/{btype}",
    )


def stream(*products: Product) -> ProductList:
    """A products document holding ``products``."""
    return ProductList(content_id=CONTENT_ID, products={p.name: p for p in products})


def test_images_go_to_os_arch_subarch_release_label_with_a_generic_alias_for_ga() -> None:
    """A GA kernel product is placed under its subarch and under ``generic``."""
    layout = plan_layout([stream(ubuntu("ga-24.04"), ubuntu("hwe-24.04"))])
    paths = {f.relpath: f.source for f in layout.files}
    assert (
        paths["ubuntu/amd64/ga-24.04/noble/stable/boot-kernel"]
        == "ubuntu/amd64/ga-24.04/noble/20250718/boot-kernel"
    )
    assert (
        paths["ubuntu/amd64/generic/noble/stable/squashfs"]
        == "ubuntu/amd64/ga-24.04/noble/20250718/squashfs"
    )
    assert "ubuntu/amd64/hwe-24.04/noble/stable/boot-initrd" in paths
    assert not any(p.startswith("ubuntu/amd64/generic/") and "hwe" in s for p, s in paths.items())
    assert len(layout.sources) == 6
    assert layout.skipped == ()


def test_only_the_newest_version_of_a_product_is_laid_out() -> None:
    """Older versions of a product are not placed nor downloaded."""
    layout = plan_layout(
        [
            stream(
                ubuntu(
                    "hwe-24.04", versions={"20250620": ["boot-kernel"], "20250718": ["boot-kernel"]}
                )
            )
        ]
    )
    assert [f.source for f in layout.files] == ["ubuntu/amd64/hwe-24.04/noble/20250718/boot-kernel"]


def test_flavoured_ga_kernels_get_no_generic_alias_and_rolling_ones_get_a_rolling_alias() -> None:
    """Only generic-flavour GA kernels are aliased to generic; rolling → hwe-rolling[-edge]."""
    layout = plan_layout(
        [
            stream(
                ubuntu("ga-24.04-lowlatency", kflavor="lowlatency"),
                ubuntu("hwe-24.04-edge", rolling=True),
            )
        ]
    )
    paths = {f.relpath for f in layout.files}
    assert not any("/generic/" in p for p in paths)
    assert "ubuntu/amd64/hwe-rolling-edge/noble/stable/boot-kernel" in paths
    assert "ubuntu/amd64/hwe-24.04-edge/noble/stable/boot-kernel" in paths


def test_bootloaders_go_under_bootloader_type_arch_only() -> None:
    """Bootloader archives sit under bootloader/<type>/<arch>/, never at the root: two
    architectures' grub2.tar.xz both land (the pull links the unpacked boot files)."""
    layout = plan_layout(
        [
            stream(
                bootloader(
                    "grub-efi-signed",
                    "uefi",
                    "amd64",
                    ["grub2-signed.tar.xz", "shim-signed.tar.xz"],
                ),
                bootloader("grub-efi", "uefi", "arm64", ["grub2.tar.xz"]),
                bootloader("grub-ieee1275", "open-firmware", "ppc64el", ["grub2.tar.xz"]),
                bootloader("pxelinux", "pxe", "i386", ["syslinux.tar.xz"]),
            )
        ]
    )
    paths = {f.relpath: f.source for f in layout.files}
    assert (
        paths["bootloader/uefi/amd64/shim-signed.tar.xz"]
        == "grub-efi-signed/amd64/generic/uefi/20250718.0/shim-signed.tar.xz"
    )
    assert not [p for p in paths if not p.startswith("bootloader/")]
    assert (
        paths["bootloader/uefi/arm64/grub2.tar.xz"]
        != (paths["bootloader/open-firmware/ppc64el/grub2.tar.xz"])
    )
    assert layout.skipped == ()


def test_maas_meta_describes_each_image_and_the_images_it_reports_match() -> None:
    """maas.meta is os → arch → subarch → kflavor → release → label, with MAAS's item keys."""
    layout = plan_layout(
        [stream(ubuntu("ga-24.04"), bootloader("pxelinux", "pxe", "i386", ["syslinux.tar.xz"]))]
    )
    meta = json.loads(layout.meta_json())
    leaf = meta["ubuntu"]["amd64"]["ga-24.04"]["generic"]["noble"]["stable"]
    assert leaf["product_name"] == "maas:boot:ubuntu:amd64:ga-24.04:noble"
    assert leaf["version_name"] == "20250718"
    assert leaf["release_title"] == "24.04 LTS"
    assert set(leaf["files"]) == {"boot-kernel", "boot-initrd", "squashfs"}
    assert (
        meta["pxelinux"]["i386"]["generic"]["generic"]["pxe"]["stable"]["bootloader-type"] == "pxe"
    )
    assert layout.images == [
        RackImage(name="pxelinux/pxe", architecture="i386", subarches=["generic"]),
        RackImage(name="ubuntu/noble", architecture="amd64", subarches=["ga-24.04"]),
    ]
    assert images_from_meta(meta) == layout.images


def test_items_with_unsafe_or_missing_fields_are_skipped_with_the_reason() -> None:
    """A hidden, slashed or missing segment cannot become a path; the rest still lands."""
    hidden = product(
        "maas:boot:x",
        {"os": ".hidden", "arch": "amd64", "subarch": "generic", "release": "r", "label": "stable"},
        {"1": ["f"]},
        "x",
    )
    nolabel = product(
        "maas:boot:y",
        {"os": "ubuntu", "arch": "amd64", "subarch": "generic", "release": "r"},
        {"1": ["f"]},
        "y",
    )
    slashed = product(
        "maas:boot:z",
        {"os": "ubuntu", "arch": "amd64", "subarch": "a/b", "release": "r", "label": "stable"},
        {"1": ["f"]},
        "z",
    )
    layout = plan_layout([stream(hidden, nolabel, slashed, ubuntu("ga-24.04"))])
    reasons = sorted(s.reason for s in layout.skipped)
    assert reasons == [
        "field label: missing",
        "field os: path segment '.hidden' starts with '.'",
        "field subarch: path segment 'a/b' holds a '/'",
    ]
    assert len(layout.sources) == 3


def test_two_items_claiming_one_path_keep_the_first_and_report_the_other() -> None:
    """Different content at one path, or a file where a directory must be, is refused."""
    first = ubuntu("ga-24.04", versions={"1": ["boot-kernel"]})
    clash = product("maas:boot:other", dict(first.attrs), {"2": ["boot-kernel"]}, "other")
    dir_clash = bootloader("grub", "uefi", "amd64", ["ubuntu"])  # no root alias: no clash
    layout = plan_layout([stream(first, clash, dir_clash)])
    assert len(layout.skipped) == 1
    assert "already taken by other content" in layout.skipped[0].reason
    assert "ubuntu" not in {f.relpath for f in layout.files}
    assert "bootloader/uefi/amd64/ubuntu" in {f.relpath for f in layout.files}


def test_a_file_named_maas_meta_is_refused_with_its_whole_version() -> None:
    """maas.meta is the snapshot's own description: no item may be named so, anywhere."""
    layout = plan_layout(
        [
            stream(
                bootloader("grub", "uefi", "amd64", ["grubx64.efi", "maas.meta"]),
                ubuntu("ga-24.04", versions={"20250718": ["boot-kernel", "maas.meta"]}),
                bootloader("pxelinux", "pxe", "i386", ["syslinux.tar.xz"]),
            )
        ]
    )
    assert {f.relpath for f in layout.files} == {"bootloader/pxe/i386/syslinux.tar.xz"}
    assert [s.reason for s in layout.skipped] == [
        "file name: 'maas.meta' is the name of the rack's own metadata file"
    ] * 2
    assert {v.product for v in layout.left_out} == {
        "maas:boot:grub:amd64:generic:uefi",
        "maas:boot:ubuntu:amd64:ga-24.04:noble",
    }


def test_segment_problem_accepts_names_and_refuses_escapes() -> None:
    """Plain names pass; empty, dot, dot-dot, hidden and slashed names do not."""
    assert segment_problem("ga-24.04") is None
    for bad in ("", ".", "..", ".x", "a/b", "a\\b", "a\x00"):
        assert segment_problem(bad) is not None, bad


def test_images_from_meta_ignores_malformed_parts() -> None:
    """Non-mapping nodes in a damaged maas.meta are skipped, not fatal."""
    meta = {
        "ubuntu": {"amd64": {"ga-24.04": {"generic": {"noble": {"stable": {}}}}, "broken": "x"}},
        "junk": 3,
    }
    assert images_from_meta(meta) == [
        RackImage(name="ubuntu/noble", architecture="amd64", subarches=["ga-24.04"])
    ]


def test_a_300_character_file_name_refuses_its_item_and_its_whole_version_only() -> None:
    """The name no file system takes is refused by the served-name rule; the other files of
    that image are left out with it, and every other image is laid out."""
    long_name = "k" * 300
    layout = plan_layout(
        [
            stream(
                ubuntu("ga-24.04"),
                ubuntu("hwe-24.04", versions={"20250718": ["boot-kernel", long_name]}),
            )
        ]
    )
    assert {f.source.split("/")[2] for f in layout.files} == {"ga-24.04"}
    assert len(layout.sources) == 3
    (skipped,) = layout.skipped
    assert skipped.location.endswith(f"items[{long_name}]")
    assert skipped.reason.startswith("file name: path segment 'kkkk")
    assert skipped.reason.endswith("is 300 bytes, more than 255")
    (left_out,) = layout.left_out
    assert (left_out.product, left_out.version, left_out.items) == (
        "maas:boot:ubuntu:amd64:hwe-24.04:noble",
        "20250718",
        2,
    )
    assert left_out.reason == f"{skipped.location}: {skipped.reason}"
    meta = json.loads(layout.meta_json())
    assert set(meta["ubuntu"]["amd64"]) == {"ga-24.04"}


@pytest.mark.parametrize(
    ("versions", "says"),
    [
        ({".hidden": ["boot-kernel"]}, "path: path segment '.hidden' starts with '.'"),
        ({"20250718": ["boot-kernel", ".squashfs"]}, "file name: path segment '.squashfs'"),
    ],
)
def test_names_the_region_would_not_serve_are_refused_by_the_shared_rule(
    versions: dict[str, list[str]], says: str
) -> None:
    """A hidden version or file name is published but never served: refused, never fetched."""
    layout = plan_layout([stream(ubuntu("hwe-24.04", versions=versions), ubuntu("ga-24.04"))])
    assert any(s.reason.startswith(says) for s in layout.skipped), layout.skipped
    assert not any("hwe-24.04" in f.relpath for f in layout.files)
    assert not any("hwe-24.04" in i.path for i in layout.sources if i.path)
    assert [v.product for v in layout.left_out] == ["maas:boot:ubuntu:amd64:hwe-24.04:noble"]


def test_a_clash_leaves_the_whole_later_version_out_not_just_the_clashing_file() -> None:
    """An image that loses one of its paths to another image is not published without it."""
    first = ubuntu("ga-24.04", versions={"1": ["boot-kernel"]})
    attrs = dict(first.attrs)
    clash = product("maas:boot:other", attrs, {"2": ["boot-initrd", "boot-kernel"]}, "zz")
    layout = plan_layout([stream(first, clash)])
    assert {f.source for f in layout.files} == {"ubuntu/amd64/ga-24.04/noble/1/boot-kernel"}
    assert [(v.product, v.items) for v in layout.left_out] == [("maas:boot:other", 2)]
    assert "already taken by other content" in layout.left_out[0].reason


def test_an_item_without_a_checksum_refuses_its_version() -> None:
    """A file the rack cannot verify is never published, and neither is its image."""
    base = ubuntu("hwe-24.04")
    version = base.versions["20250718"]
    kernel = version.items["boot-kernel"]
    unverifiable = Item(name=kernel.name, path=kernel.path, sha256=None, size=10, attrs={})
    damaged = Product(
        name=base.name,
        attrs=base.attrs,
        versions={
            "20250718": Version(
                name="20250718", items={**version.items, "boot-kernel": unverifiable}
            )
        },
    )
    layout = plan_layout([stream(damaged, ubuntu("ga-24.04"))])
    assert [s.reason for s in layout.skipped] == ["item: no sha256"]
    assert not any("hwe" in f.relpath for f in layout.files)
