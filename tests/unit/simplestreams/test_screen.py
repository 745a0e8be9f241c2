"""Screening refuses, version by version, items that could not be stored or served."""

from __future__ import annotations

import pytest

from simplestreams import Item, Product, ProductList, Version
from simplestreams.screen import DEFAULT_MAX_ITEM_SIZE, Refusal, screen_products

SHA = "a" * 64
DOC = "http://up/streams/v1/v3.sjson"


def _item(name: str, path: str, size: int = 10, **attrs: str) -> Item:
    return Item(name=name, path=path, sha256=SHA, size=size, attrs={"ftype": name, **attrs})


def _doc(versions: dict[str, list[Item]], **attrs: str) -> ProductList:
    base = {"os": "ubuntu", "arch": "amd64", "release": "noble", "label": "stable"}
    return ProductList(
        content_id="v3",
        products={
            "p": Product(
                name="p",
                attrs={**base, "subarch": "ga-24.04", **attrs},
                versions={
                    v: Version(name=v, items={i.name: i for i in items})
                    for v, items in versions.items()
                },
            ),
            "q": Product(
                name="q",
                attrs={**base, "subarch": "hwe-24.04"},
                versions={"1": Version(name="1", items={"k": _item("k", "q/1/k")})},
            ),
        },
    )


def test_a_clean_document_is_returned_unchanged(ubuntu: ProductList) -> None:
    """Real upstream products pass the screen as they are, region names included."""
    screened = screen_products(ubuntu, source=DOC, image_names=True)
    assert screened.refusals == ()
    assert screened.products is ubuntu


def test_a_bad_item_drops_its_whole_version_and_only_that_one() -> None:
    """A 300-byte file name refuses version 2 of p; version 1 and product q stay."""
    doc = _doc(
        {
            "1": [_item("k", "p/1/k"), _item("i", "p/1/i")],
            "2": [_item("k", "p/2/k"), _item("i", "p/2/" + "x" * 300)],
        }
    )
    screened = screen_products(doc, source=DOC)
    assert sorted(screened.products.products["p"].versions) == ["1"]
    assert "q" in screened.products.products
    (refusal,) = screened.refusals
    assert refusal.location == f"{DOC}: products[p].versions[2].items[i].path"
    assert refusal.reason.endswith("is 300 bytes, more than 255")


def test_a_product_left_without_versions_goes() -> None:
    """When every version of a product is refused, the product is not offered at all."""
    doc = _doc({"1": [_item("k", ".bootsync/store/k")]})
    screened = screen_products(doc)
    assert set(screened.products.products) == {"q"}
    assert screened.refusals == (
        Refusal(
            "products[p].versions[1].items[k].path", "path segment '.bootsync' starts with '.'"
        ),
    )


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("p/1/.squashfs", "starts with '.'"),
        ("/".join(["d" * 200] * 6) + "/k", "more than 1024"),
    ],
)
def test_paths_no_server_could_serve_are_refused(path: str, problem: str) -> None:
    """Dot-files and over-long paths break the served-path rule."""
    (refusal,) = screen_products(_doc({"1": [_item("k", path)]})).refusals
    assert problem in refusal.reason


def test_an_item_over_the_size_limit_is_refused() -> None:
    """An item claiming a petabyte is over the default 64 GiB limit; a configured one applies."""
    doc = _doc({"1": [_item("k", "p/1/k", size=10**15)], "2": [_item("k", "p/2/k", size=100)]})
    (refusal,) = screen_products(doc, source=DOC).refusals
    assert refusal.location == f"{DOC}: products[p].versions[1].items[k].size"
    assert refusal.reason == (
        f"1000000000000000 bytes is more than the largest item allowed ({DEFAULT_MAX_ITEM_SIZE} bytes)"
    )
    assert len(screen_products(doc, max_item_size=99).refusals) == 2
    assert screen_products(doc, max_item_size=10**15).refusals == ()


def test_image_names_refuse_hidden_versions_and_unsafe_labels_at_their_level() -> None:
    """With image_names, a '.hidden' version and a '../..' label are refused, named where set."""
    hidden = _doc({".hidden": [_item("k", "p/h/k")], "1": [_item("k", "p/1/k")]})
    assert screen_products(hidden).refusals == ()
    (refusal,) = screen_products(hidden, image_names=True).refusals
    assert refusal.location == "products[p].versions[.hidden]"
    assert refusal.reason == "version name: path segment '.hidden' starts with '.'"
    label = _doc({"1": [_item("k", "p/1/k")]}, label="../../etc")
    (refusal,) = screen_products(label, image_names=True).refusals
    assert refusal.location == "products[p].label"
    assert refusal.reason == "label: path segment '../../etc' holds a '/'"
    item_level = _doc({"1": [_item("k", "p/1/k", release=".noble")]})
    (refusal,) = screen_products(item_level, image_names=True).refusals
    assert refusal.location == "products[p].versions[1].items[k].release"


def test_a_bootloader_is_judged_by_its_bootloader_type() -> None:
    """A bootloader's release is its bootloader-type, which must be a served segment too."""
    doc = _doc({"1": [_item("k", "b/1/k")]}, **{"bootloader-type": ".pxe"})
    (refusal,) = screen_products(doc, image_names=True).refusals
    assert refusal.location == "products[p].bootloader-type"
    assert refusal.reason.startswith("bootloader-type: path segment '.pxe'")
