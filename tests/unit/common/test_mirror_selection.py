"""How a mirror's selection accumulates over runs (``bootsync mirror`` without ``--delete``)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from common.mirror.selection import MirrorSelection, accumulate
from simplestreams import IndexEntry, ProductList, StreamFormatError, parse_products

CID = "com.example:v1:download"
ENTRY = IndexEntry(content_id=CID, path=f"streams/v1/{CID}.sjson", format="products:1.0")


def _item(path: str) -> dict[str, Any]:
    return {"path": path, "sha256": hashlib.sha256(path.encode()).hexdigest(), "size": 1}


def doc(products: dict[str, dict[str, list[str]]]) -> ProductList:
    """A products document: product -> version -> item names (each a file)."""
    return parse_products(
        {
            "format": "products:1.0",
            "content_id": CID,
            "products": {
                p: {
                    "arch": "amd64",
                    "versions": {
                        v: {"items": {i: _item(f"{p}/{v}/{i}") for i in items}}
                        for v, items in versions.items()
                    },
                }
                for p, versions in products.items()
            },
        }
    )


def selection(products: dict[str, dict[str, list[str]]]) -> MirrorSelection:
    return MirrorSelection(entries={CID: ENTRY}, products={CID: doc(products)})


def held(result: MirrorSelection) -> dict[str, dict[str, list[str]]]:
    return {
        p: {v: sorted(ver.items) for v, ver in product.versions.items()}
        for p, product in result.products[CID].products.items()
    }


def test_items_of_one_version_selected_by_two_runs_are_both_held() -> None:
    """ftype=squashfs then ftype=boot-kernel on one version holds both items."""
    upstream = {CID: doc({"p": {"20250718": ["kernel", "squashfs"]}})}
    result = accumulate(
        selection({"p": {"20250718": ["squashfs"]}}),
        selection({"p": {"20250718": ["kernel"]}}),
        upstream,
        keep=1,
    )
    assert held(result) == {"p": {"20250718": ["kernel", "squashfs"]}}


def test_a_product_no_current_filter_selects_stays_as_the_earlier_run_left_it() -> None:
    """An earlier run's product stays, even at a version the upstream no longer lists."""
    upstream = {CID: doc({"kernels": {"20250815": ["k"]}, "grub": {"2": ["g"]}})}
    result = accumulate(
        selection({"kernels": {"20250718": ["k"]}}),
        selection({"grub": {"2": ["g"]}}),
        upstream,
        keep=1,
    )
    assert held(result) == {"kernels": {"20250718": ["k"]}, "grub": {"2": ["g"]}}


def test_a_selected_product_keeps_the_newest_max_versions_the_upstream_still_lists() -> None:
    """Earlier versions of a selected product count toward --max only while upstream lists them."""
    upstream = {CID: doc({"p": {"2": ["f"], "3": ["f"]}})}
    previous = selection({"p": {"1": ["f"], "2": ["f"]}})
    current = selection({"p": {"3": ["f"]}})
    assert held(accumulate(previous, current, upstream, keep=2)) == {"p": {"2": ["f"], "3": ["f"]}}
    assert held(accumulate(previous, current, upstream, keep=1)) == {"p": {"3": ["f"]}}


def test_the_selection_survives_the_state_file_round_trip() -> None:
    """What to_json writes, from_json reads back equal."""
    chosen = selection({"p": {"1": ["a", "b"]}})
    assert MirrorSelection.from_json(chosen.to_json(), source="state.json") == chosen


def test_a_damaged_selection_in_the_state_file_is_refused_naming_the_file() -> None:
    """A products document filed under another content id is a StreamFormatError at the file."""
    data = selection({"p": {"1": ["a"]}}).to_json()
    data["products"]["other"] = data["products"].pop(CID)
    with pytest.raises(StreamFormatError, match=r"state\.json: selection\.products\[other\]"):
        MirrorSelection.from_json(data, source="state.json")
