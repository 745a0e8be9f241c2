"""Models are immutable values, and flattening follows SimpleStreams inheritance."""

from __future__ import annotations

import pytest

from simplestreams import FrozenMap, Item, Product, ProductList, Version, flatten


def _tree() -> ProductList:
    item = Item(
        name="k",
        path="a/k",
        sha256="0" * 64,
        size=7,
        attrs={"ftype": "boot-kernel", "label": "item-label", "extra": [1, 2]},
    )
    version = Version(name="20250101", attrs={"serial_note": 3}, items={"k": item})
    product = Product(
        name="p",
        attrs={
            "label": "product-label",
            "rolling": True,
            "ratio": 1.5,
            "nested": {"x": 1},
            "gone": None,
        },
        versions={"20250101": version},
    )
    return ProductList(
        content_id="c", datatype="image-ids", attrs={"label": "top"}, products={"p": product}
    )


def test_frozen_map_is_read_only_hashable_and_equal_to_a_dict() -> None:
    """FrozenMap compares like a dict, hashes by content and has no setters."""
    frozen = FrozenMap({"a": 1})
    assert frozen == {"a": 1}
    assert hash(frozen) == hash(FrozenMap([("a", 1)]))
    with pytest.raises(TypeError):
        frozen["a"] = 2  # type: ignore[index]


def test_models_freeze_plain_dicts_and_lists() -> None:
    """Dicts and lists passed in become FrozenMap and tuples, so models are hashable."""
    item = Item(name="i", attrs={"tags": ["a", {"b": [1]}]})
    assert item.attrs["tags"] == ("a", FrozenMap({"b": (1,)}))
    assert isinstance(hash(_tree()), int)


def test_attrs_may_not_shadow_typed_fields() -> None:
    """A reserved key in attrs is refused rather than silently lost on render."""
    with pytest.raises(ValueError, match="reserved keys \\['sha256'\\]"):
        Item(name="i", attrs={"sha256": "x"})


def test_child_key_must_match_child_name() -> None:
    """A version's items are keyed by their own names."""
    with pytest.raises(ValueError, match="holds a child named 'b'"):
        Version(name="v", items={"a": Item(name="b")})


def test_deeper_levels_win_when_flattening() -> None:
    """Item scalars override version, product and document scalars of the same name."""
    (flat,) = flatten(_tree())
    assert flat.fields["label"] == "item-label"
    assert flat.fields["ftype"] == "boot-kernel"


def test_flattening_stringifies_numbers_and_drops_containers() -> None:
    """Ints, floats and booleans become strings; lists, dicts and nulls are dropped."""
    (flat,) = flatten(_tree())
    assert flat.fields["serial_note"] == "3"
    assert flat.fields["ratio"] == "1.5"
    assert flat.fields["rolling"] == "True"
    assert flat.fields["size"] == "7"
    assert not {"extra", "nested", "gone"} & set(flat.fields)


def test_flattening_adds_names_and_document_fields() -> None:
    """Flattened fields carry content_id, datatype and the three names."""
    (flat,) = flatten(_tree())
    assert {
        k: flat.fields[k]
        for k in ("content_id", "datatype", "format", "product_name", "version_name", "item_name")
    } == {
        "content_id": "c",
        "datatype": "image-ids",
        "format": "products:1.0",
        "product_name": "p",
        "version_name": "20250101",
        "item_name": "k",
    }
    assert "updated" not in flat.fields
    assert flat.location == "c: products[p].versions[20250101].items[k]"


def test_flatten_order_is_sorted_whatever_the_input_order(ubuntu: ProductList) -> None:
    """Flattened items come sorted by product, version and item name."""
    keys = [(f.product_name, f.version_name, f.item_name) for f in flatten(ubuntu)]
    assert keys == sorted(keys)
