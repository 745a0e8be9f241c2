"""Selecting versions, items and images prunes the tree into a renderable document."""

from __future__ import annotations

import pytest

from simplestreams import (
    Item,
    ItemFilter,
    Product,
    ProductList,
    Selection,
    Version,
    filter_items,
    flatten,
    matches_all,
    newest_versions,
    parse_filters,
    parse_products,
    render_products,
    select_images,
)
from tests.unit.simplestreams.samples import JAMMY_GA


def _versions(products: ProductList) -> dict[str, list[str]]:
    return {name: sorted(p.versions) for name, p in products.products.items()}


def test_newest_version_per_product_is_kept(ubuntu: ProductList) -> None:
    """keep=1 leaves only the largest serial of every product."""
    assert _versions(newest_versions(ubuntu)) == {
        JAMMY_GA: ["20250718"],
        "com.ubuntu.maas.stable:v3:boot:22.04:arm64:ga-22.04": ["20250812"],
        "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04": ["20250709"],
        "com.ubuntu.maas.stable:v3:boot:24.04:arm64:ga-24.04": ["20250709"],
    }


def test_keep_two_keeps_both_sample_versions(ubuntu: ProductList) -> None:
    """keep=2 keeps the two serials each sample product has."""
    assert newest_versions(ubuntu, keep=2) == ubuntu


def test_versions_without_downloads_are_not_candidates() -> None:
    """A newer version holding no file does not push out the newest downloadable one."""
    product = Product(
        name="p",
        versions={
            "20250101": Version(
                name="20250101", items={"f": Item(name="f", path="p/1/f", sha256="a" * 64, size=1)}
            ),
            "20250202": Version(name="20250202", items={"note": Item(name="note")}),
        },
    )
    empty = Product(name="empty", versions={"1": Version(name="1")})
    kept = newest_versions(ProductList(content_id="c", products={"p": product, "empty": empty}))
    assert _versions(kept) == {"p": ["20250101"]}


def test_keep_below_one_is_refused(ubuntu: ProductList) -> None:
    """Keeping zero versions is a caller error."""
    with pytest.raises(ValueError, match="keep must be at least 1"):
        newest_versions(ubuntu, keep=0)


def test_filter_items_prunes_items_versions_and_products(ubuntu: ProductList) -> None:
    """Filtering to amd64 squashfs leaves two products with only squashfs items."""
    filters = parse_filters(["arch=amd64", "ftype=squashfs"])
    kept = filter_items(ubuntu, lambda f: matches_all(filters, f.fields))
    assert sorted(kept.products) == [
        JAMMY_GA,
        "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04",
    ]
    assert {f.item_name for f in flatten(kept)} == {"squashfs"}
    assert len(flatten(kept)) == 4
    assert parse_products(render_products(kept)) == kept


def test_filter_that_matches_nothing_leaves_an_empty_document(ubuntu: ProductList) -> None:
    """With no item left, every version and product is pruned but the header stays."""
    kept = filter_items(ubuntu, lambda f: False)
    assert kept.products == {}
    assert kept.content_id == ubuntu.content_id


def test_image_filters_select_the_same_items_as_sstream_mirror(ubuntu: ProductList) -> None:
    """arch=amd64 release~(jammy|noble) --max=1 gives the 8 items sstream-mirror chose."""
    filters = parse_filters(["arch=amd64", "release~(jammy|noble)"])
    kept = filter_items(newest_versions(ubuntu), lambda f: matches_all(filters, f.fields))
    assert len(flatten(kept)) == 8


def test_bootloader_filter_selects_the_seven_archives(bootloaders: ProductList) -> None:
    """os~(grub*|pxelinux) --max=1 gives the 7 archives of 5 bootloaders, as upstream does."""
    flt = ItemFilter.parse("os~(grub*|pxelinux)")
    kept = filter_items(newest_versions(bootloaders), lambda f: flt.matches(f.fields))
    assert len(kept.products) == 5
    assert len(flatten(kept)) == 7


def test_select_images_keeps_matching_products(ubuntu: ProductList) -> None:
    """A noble amd64 selection keeps exactly the 24.04 amd64 product."""
    kept = select_images(ubuntu, [Selection("ubuntu", "noble", ("amd64",))])
    assert list(kept.products) == ["com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04"]


def test_select_images_with_wildcards_and_no_selections_keep_all(ubuntu: ProductList) -> None:
    """A * selection and an empty selection list both keep every product."""
    assert select_images(ubuntu, [Selection("*", "*")]) == ubuntu
    assert select_images(ubuntu, []) == ubuntu


def test_bootloaders_can_be_kept_whatever_the_selection(bootloaders: ProductList) -> None:
    """include_bootloaders keeps bootloaders a release selection would not match."""
    only_noble = [Selection("ubuntu", "noble")]
    assert select_images(bootloaders, only_noble).products == {}
    assert len(select_images(bootloaders, only_noble, include_bootloaders=True).products) == 5


def test_select_images_by_bootloader_type(bootloaders: ProductList) -> None:
    """A bootloader is selected by its os and its bootloader type as release."""
    kept = select_images(bootloaders, [Selection("pxelinux", "pxe", ("i386",))])
    assert list(kept.products) == ["com.ubuntu.maas.stable:1:pxelinux:pxe:i386"]
