"""Hypothesis strategies for valid SimpleStreams models and for safe and unsafe paths."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from simplestreams import Index, IndexEntry, Item, Product, ProductList, Version
from simplestreams.models import (
    INDEX_ENTRY_KEYS,
    INDEX_KEYS,
    ITEM_KEYS,
    PRODUCT_KEYS,
    PRODUCT_LIST_KEYS,
    VERSION_KEYS,
)

# Path segments: anything but '/', '\', controls and lone surrogates, and not '.'/'..'.
segments = st.text(
    alphabet=st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
safe_paths = st.lists(segments, min_size=1, max_size=6).map("/".join)


def _insert(parts: list[str], index: int, value: str) -> str:
    return "/".join([*parts[:index], value, *parts[index:]])


@st.composite
def unsafe_paths(draw: st.DrawFn) -> str:
    """A safe path with exactly one defect injected."""
    parts = draw(st.lists(segments, min_size=1, max_size=5))
    where = draw(st.integers(0, len(parts)))
    word = draw(st.sampled_from(parts))
    cut = draw(st.integers(0, len(word)))
    control = draw(st.characters(categories=["Cc"]))
    defects: list[Callable[[], str]] = [
        lambda: "/" + "/".join(parts),
        lambda: _insert(parts, where, ".."),
        lambda: _insert(parts, where, "."),
        lambda: _insert(parts, where, ""),
        lambda: "/".join(parts) + "/",
        lambda: "/".join(parts).replace(word, word[:cut] + "\\" + word[cut:], 1),
        lambda: "/".join(parts).replace(word, word[:cut] + control + word[cut:], 1),
        lambda: "",
    ]
    return draw(st.sampled_from(defects))()


names = st.text(min_size=1, max_size=16)
optional_text = st.none() | st.text(max_size=24)
sha256s = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
sizes = st.integers(min_value=0, max_value=2**63)

_keys = st.text(alphabet=string.ascii_letters + string.digits + "_-.:", min_size=1, max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16)
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=6,
)


def attrs(reserved: frozenset[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Extra attributes of one level, never using a key that level reserves."""
    return st.dictionaries(_keys.filter(lambda k: k not in reserved), json_values, max_size=3)


@st.composite
def items(draw: st.DrawFn, name: str) -> Item:
    """A downloadable item, or an informational one that may carry a checksum or size."""
    if draw(st.booleans()):
        return Item(
            name=name,
            path=draw(safe_paths),
            sha256=draw(sha256s),
            size=draw(sizes),
            attrs=draw(attrs(ITEM_KEYS)),
        )
    return Item(
        name=name,
        sha256=draw(st.none() | sha256s),
        size=draw(st.none() | sizes),
        attrs=draw(attrs(ITEM_KEYS)),
    )


@st.composite
def versions(draw: st.DrawFn, name: str) -> Version:
    """A version with up to three items."""
    item_names = draw(st.lists(names, max_size=3, unique=True))
    return Version(
        name=name, attrs=draw(attrs(VERSION_KEYS)), items={n: draw(items(n)) for n in item_names}
    )


@st.composite
def products(draw: st.DrawFn, name: str) -> Product:
    """A product with up to three versions."""
    version_names = draw(st.lists(names, max_size=3, unique=True))
    return Product(
        name=name,
        attrs=draw(attrs(PRODUCT_KEYS)),
        versions={n: draw(versions(n)) for n in version_names},
    )


@st.composite
def product_lists(draw: st.DrawFn) -> ProductList:
    """A valid products document with up to three products."""
    product_names = draw(st.lists(names, max_size=3, unique=True))
    return ProductList(
        content_id=draw(names),
        datatype=draw(optional_text),
        updated=draw(optional_text),
        attrs=draw(attrs(PRODUCT_LIST_KEYS)),
        products={n: draw(products(n)) for n in product_names},
    )


@st.composite
def indexes(draw: st.DrawFn) -> Index:
    """A valid index document with up to four entries, some without a path."""
    entries = {}
    for content_id in draw(st.lists(names, max_size=4, unique=True)):
        entries[content_id] = IndexEntry(
            content_id=content_id,
            path=draw(st.none() | safe_paths),
            format=draw(optional_text),
            datatype=draw(optional_text),
            updated=draw(optional_text),
            products=tuple(draw(st.lists(names, max_size=3))),
            attrs=draw(attrs(INDEX_ENTRY_KEYS)),
        )
    return Index(updated=draw(optional_text), attrs=draw(attrs(INDEX_KEYS)), entries=entries)
