"""The import's decisions: what to hold, what to remove, what to keep, and when to refuse."""

from __future__ import annotations

from typing import Any

import pytest

from region.db.resources import ResourceRow
from region.db.sources import BootSource
from region.images.catalogue import SourceDescription
from region.images.steps import (
    choose_images,
    default_arches,
    is_rollback,
    plan_blobs,
    plan_removals,
    wanted_set,
)
from simplestreams import (
    ProductList,
    Selection,
    StreamFormatError,
    parse_products,
    products_to_dict,
)

SHA = {
    name: c * 64
    for name, c in (
        ("kernel", "a"),
        ("initrd", "b"),
        ("squashfs", "c"),
        ("image", "d"),
        ("grub", "e"),
        ("manifest", "f"),
    )
}


def _item(name: str, ftype: str, path: str) -> dict[str, Any]:
    return {"ftype": ftype, "path": path, "sha256": SHA[name], "size": 10}


def _products(*, release: str = "noble", with_image_gz: bool = False) -> ProductList:
    items = {
        "boot-kernel": _item("kernel", "boot-kernel", f"{release}/k"),
        "boot-initrd": _item("initrd", "boot-initrd", f"{release}/i"),
        "squashfs": _item("squashfs", "squashfs", f"{release}/squashfs"),
        "manifest": _item("manifest", "manifest", f"{release}/squashfs.manifest"),
    }
    if with_image_gz:
        items["root-image.gz"] = _item("image", "root-image.gz", f"{release}/root-image.gz")
    return parse_products(
        {
            "content_id": "com.example:v3:download",
            "format": "products:1.0",
            "products": {
                f"com.example:v3:{release}:amd64:ga": {
                    "os": "ubuntu",
                    "release": release,
                    "arch": "amd64",
                    "subarch": "ga-24.04",
                    "label": "stable",
                    "release_title": "24.04 LTS",
                    "subarches": "generic,ga-24.04",
                    "versions": {"20250101": {"items": items}},
                },
                "com.example:1:grub-efi-signed:uefi:amd64": {
                    "os": "grub-efi-signed",
                    "bootloader-type": "uefi",
                    "arch": "amd64",
                    "label": "stable",
                    "versions": {
                        "20250101.0": {
                            "items": {
                                "grub": _item("grub", "archive.tar.xz", "bootloaders/grub.tar.xz")
                            }
                        }
                    },
                },
            },
        }
    )


def _described(source_id: int, products: ProductList) -> SourceDescription:
    source = BootSource(
        id=source_id,
        url=f"http://s{source_id}.example/",
        keyring_filename="",
        keyring_data=b"k",
        created="",
        updated="",
    )
    return SourceDescription(
        source=source,
        index_url="",
        base_url=source.url,
        index_updated=None,
        products=(products,),
        entries=(),
        warnings=(),
    )


def _resource(rid: int, name: str, arch: str, *, bootloader: str | None = None) -> ResourceRow:
    return ResourceRow(
        id=rid,
        rtype=0,
        name=name,
        architecture=arch,
        kflavor="generic",
        bootloader_type=bootloader,
        rolling=False,
        base_image="",
        extra={"label": "stable"},
    )


NOBLE = _resource(1, "ubuntu/noble", "amd64/ga-24.04")
JAMMY = _resource(2, "ubuntu/jammy", "amd64/ga-22.04")
GRUB = _resource(3, "grub-efi-signed/uefi", "amd64/generic", bootloader="uefi")
NOBLE_SELECTED = Selection(os="ubuntu", release="noble", arches=("amd64",))


def test_a_product_keeps_maas_filetypes_and_names_files_by_basename() -> None:
    """The manifest is not imported; files are named after their path's last segment."""
    ws = wanted_set(_products(), "com.example:v3:noble:amd64:ga")
    assert ws is not None
    assert (ws.name, ws.architecture, ws.version, ws.label) == (
        "ubuntu/noble",
        "amd64/ga-24.04",
        "20250101",
        "stable",
    )
    assert sorted(f.filename for f in ws.files) == ["i", "k", "squashfs"]
    assert ws.extra["title"] == "Ubuntu 24.04 LTS"


def test_root_image_gz_is_skipped_when_the_version_has_a_squashfs() -> None:
    """Like MAAS, root-image.gz is redundant next to a squashfs."""
    ws = wanted_set(_products(with_image_gz=True), "com.example:v3:noble:amd64:ga")
    assert ws is not None
    assert "root-image.gz" not in {f.filetype for f in ws.files}


def test_choose_takes_selected_images_plus_every_bootloader() -> None:
    """A noble selection yields noble and the bootloader; a source without selections only
    bootloaders, never everything."""
    chosen = choose_images([_described(1, _products())], {1: [NOBLE_SELECTED]})
    unselected = choose_images([_described(1, _products())], {})
    assert {c.wanted.name for c in chosen} == {"ubuntu/noble", "grub-efi-signed/uefi"}
    assert {c.wanted.name for c in unselected} == {"grub-efi-signed/uefi"}
    grub = next(c for c in chosen if c.wanted.bootloader_type == "uefi")
    assert grub.urls == {SHA["grub"]: "http://s1.example/bootloaders/grub.tar.xz"}


def test_the_first_source_offering_an_image_wins_it() -> None:
    """Two sources offering the same image: it comes from the first one."""
    chosen = choose_images(
        [_described(1, _products()), _described(2, _products())],
        {1: [NOBLE_SELECTED], 2: [NOBLE_SELECTED]},
    )
    assert {c.source_id for c in chosen} == {1}
    assert len(chosen) == 2


def test_the_plan_fetches_each_blob_once_and_only_those_the_store_lacks_whole() -> None:
    """A blob held at its size is present; a partial one, or one not held, is to fetch."""
    chosen = choose_images([_described(1, _products())], {1: [NOBLE_SELECTED]})
    plan = plan_blobs(chosen, {SHA["kernel"]: 10, SHA["initrd"]: 9})
    assert [b.sha256 for b in plan.already_present] == [SHA["kernel"]]
    assert {b.sha256 for b in plan.to_fetch} == {SHA["initrd"], SHA["squashfs"], SHA["grub"]}
    assert plan.total_bytes == 30
    grub = next(b for b in plan.to_fetch if b.sha256 == SHA["grub"])
    assert grub.paths == ("bootloaders/grub.tar.xz",)


def test_one_sha256_listed_with_two_sizes_is_refused_by_the_plan() -> None:
    """The initrd claiming the kernel's sha256 with another size fails the plan, naming both."""
    doc = products_to_dict(_products())
    product = doc["products"]["com.example:v3:noble:amd64:ga"]
    initrd = product["versions"]["20250101"]["items"]["boot-initrd"]
    initrd.update(sha256=SHA["kernel"], size=11)
    chosen = choose_images([_described(1, parse_products(doc))], {1: [NOBLE_SELECTED]})
    with pytest.raises(StreamFormatError, match=f"sha256 {SHA['kernel']} has size"):
        plan_blobs(chosen, {})


def test_unselected_images_are_deleted() -> None:
    """An image no selection names goes, whether or not upstream still offers it."""
    plan = plan_removals(
        [NOBLE, JAMMY, GRUB],
        {NOBLE.key, GRUB.key},
        {NOBLE.key, JAMMY.key},
        {("ubuntu", "amd64", "noble"), ("ubuntu", "amd64", "jammy")},
        [NOBLE_SELECTED],
    )
    assert plan.delete == (JAMMY,)
    assert plan.kept == ()
    assert not plan.refused


def test_an_image_gone_upstream_stays_while_a_selection_names_it() -> None:
    """Noble vanished upstream but is selected: kept; a vanished bootloader is not kept."""
    plan = plan_removals([NOBLE, GRUB], set(), {NOBLE.key, GRUB.key}, set(), [NOBLE_SELECTED])
    assert plan.kept == (NOBLE,)
    assert plan.delete == (GRUB,)
    assert not plan.refused


def test_an_image_still_offered_under_another_subarch_is_not_kept() -> None:
    """Only images whose os/arch/release vanished are kept; a dropped subarch goes."""
    plan = plan_removals(
        [NOBLE], set(), {NOBLE.key}, {("ubuntu", "amd64", "noble")}, [NOBLE_SELECTED]
    )
    assert plan.delete == (NOBLE,)


def test_the_safety_valve_refuses_when_no_os_image_would_be_left() -> None:
    """Deleting the last complete OS images with nothing new is refused."""
    plan = plan_removals(
        [NOBLE, JAMMY, GRUB], {GRUB.key}, {NOBLE.key, JAMMY.key, GRUB.key}, set(), []
    )
    assert plan.refused


def test_the_safety_valve_lets_a_complete_replacement_through() -> None:
    """Switching from noble to jammy is allowed once jammy is complete."""
    plan = plan_removals([NOBLE, JAMMY], {JAMMY.key}, {NOBLE.key, JAMMY.key}, set(), [])
    assert plan.delete == (NOBLE,)
    assert not plan.refused


def test_the_safety_valve_holds_when_the_replacement_failed() -> None:
    """Switching to jammy whose download failed would leave nothing: refused."""
    plan = plan_removals([NOBLE, JAMMY], {JAMMY.key}, {NOBLE.key}, set(), [])
    assert plan.refused


def test_an_older_index_is_a_rollback_and_unreadable_dates_are_not() -> None:
    """Only a readable, strictly older `updated` counts as a rollback."""
    new, old = "Fri, 18 Jul 2025 10:00:00 +0000", "Mon, 01 Jan 2024 00:00:00 +0000"
    assert is_rollback(old, new)
    assert not is_rollback(new, old)
    assert not is_rollback(new, new)
    assert not is_rollback("yesterday", new)
    assert not is_rollback(old, None)


def test_the_default_selection_has_amd64_and_the_host_arch() -> None:
    """amd64 always, plus the host's Debian architecture name."""
    assert default_arches("x86_64") == ["amd64"]
    assert default_arches("aarch64") == ["amd64", "arm64"]
    assert default_arches("ppc64le") == ["amd64", "ppc64el"]
    assert default_arches("weird") == ["amd64"]
