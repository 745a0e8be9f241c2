"""parse_products with ``refusals``: a bad item refuses its version, the rest is read."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from simplestreams import StreamFormatError, parse_products
from simplestreams.errors import Refusal
from tests.unit.simplestreams.samples import JAMMY_GA, encode, products_doc

SOURCE = "streams/v1/com.ubuntu.maas:stable:v3:download.json"
GOOD = "20250719"
BAD = "20250718"


def two_versions(**changes: Any) -> dict[str, Any]:
    """The sample document with a second, good version; ``changes`` edit the first one's item."""
    doc = products_doc()
    versions = doc["products"][JAMMY_GA]["versions"]
    versions[GOOD] = copy.deepcopy(versions[BAD])
    versions[BAD]["items"]["squashfs"].update(changes)
    return doc


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"path": "/etc/passwd"}, "path", "absolute"),
        ({"path": "jammy/../../etc/passwd"}, "path", "'..'"),
        ({"size": -1}, "size", "negative"),
        ({"sha256": "z" * 64}, "sha256", "hex"),
        ({"sha256": "a" * 63}, "sha256", "hex"),
    ],
)
def test_a_bad_item_refuses_only_its_version(
    changes: dict[str, Any], field: str, reason: str
) -> None:
    """The version holding the bad item is left out and named with its field; the other stays."""
    refusals: list[Refusal] = []
    parsed = parse_products(encode(two_versions(**changes)), source=SOURCE, refusals=refusals)
    assert list(parsed.products[JAMMY_GA].versions) == [GOOD]
    [refusal] = refusals
    assert refusal.location == (
        f"{SOURCE}: products[{JAMMY_GA}].versions[{BAD}].items[squashfs].{field}"
    )
    assert reason in refusal.reason


def test_items_given_as_an_array_refuse_their_version() -> None:
    """``items`` as an array instead of an object refuses that version, named at ``items``."""
    doc = two_versions()
    version = doc["products"][JAMMY_GA]["versions"][BAD]
    version["items"] = list(version["items"].values())
    refusals: list[Refusal] = []
    parsed = parse_products(encode(doc), source=SOURCE, refusals=refusals)
    assert list(parsed.products[JAMMY_GA].versions) == [GOOD]
    assert [str(r) for r in refusals] == [
        f"{SOURCE}: products[{JAMMY_GA}].versions[{BAD}].items: expected an object, got an array"
    ]


def test_a_product_whose_every_version_is_refused_is_left_out() -> None:
    """A product left with no version is not in the parsed document at all."""
    refusals: list[Refusal] = []
    doc = products_doc()
    doc["products"][JAMMY_GA]["versions"][BAD]["items"]["squashfs"]["size"] = -1
    doc["products"]["other"] = {"versions": {}}
    parsed = parse_products(encode(doc), source=SOURCE, refusals=refusals)
    assert list(parsed.products) == ["other"]
    assert len(refusals) == 1


def test_without_refusals_the_first_bad_item_still_raises() -> None:
    """Strict parsing (no list given) raises the very fault lenient parsing records."""
    refusals: list[Refusal] = []
    data = encode(two_versions(size=-1))
    parse_products(data, source=SOURCE, refusals=refusals)
    with pytest.raises(StreamFormatError) as caught:
        parse_products(data, source=SOURCE)
    assert [Refusal(caught.value.location, caught.value.reason)] == refusals


def test_a_fault_of_the_document_itself_raises_even_when_lenient() -> None:
    """A key given twice makes the whole document unreadable: it raises, nothing is recorded."""
    text = encode(products_doc()).decode().replace('"format"', '"datatype": "x", "format"', 1)
    text = text.replace('"datatype": "image-ids"', '"datatype": "y"', 1)
    refusals: list[Refusal] = []
    with pytest.raises(StreamFormatError, match="duplicate key 'datatype'"):
        parse_products(text, source=SOURCE, refusals=refusals)
    assert refusals == []
