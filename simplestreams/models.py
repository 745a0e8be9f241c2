"""Immutable models of SimpleStreams documents and the flattened item view.

An ``Index`` (``index:1.0``) maps content ids to products files. A
``ProductList`` (``products:1.0``) is the tree product -> version -> item; an
item with a ``path`` is a file to download. Every other key of a level is kept
in that level's ``attrs`` so a rendered document keeps what upstream said.

All mappings are :class:`FrozenMap` and all JSON lists are tuples, so models
are hashable and compare by value. Constructors accept plain dicts and lists
and freeze them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from simplestreams.errors import StreamFormatError

K = TypeVar("K")
V_co = TypeVar("V_co", covariant=True)

PRODUCTS_FORMAT = "products:1.0"
INDEX_FORMAT = "index:1.0"


class FrozenMap(Mapping[K, V_co]):
    """A read-only, hashable mapping that keeps insertion order."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[K, V_co] | Iterable[tuple[K, V_co]] = ()) -> None:
        self._data: dict[K, V_co] = dict(data)
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V_co:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


# Declared with the abstract types so callers may pass plain dicts and lists;
# stored values are always FrozenMap and tuple (see freeze_json).
JsonValue: TypeAlias = (
    "str | int | float | bool | Sequence[JsonValue] | Mapping[str, JsonValue] | None"
)


def freeze_json(value: object, where: str) -> JsonValue:
    """Return ``value`` as an immutable JSON value (dicts -> FrozenMap, lists -> tuples).

    Raises StreamFormatError at ``where`` for a non-finite float, a non-string
    key, or anything that is not JSON.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StreamFormatError(where, f"{value!r} is not a JSON number")
        return value
    if isinstance(value, Mapping):
        return freeze_mapping(value, where)
    if isinstance(value, list | tuple):
        return tuple(freeze_json(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise StreamFormatError(where, f"{type(value).__name__} is not a JSON value")


def freeze_mapping(value: Mapping[Any, object], where: str) -> FrozenMap[str, JsonValue]:
    """Freeze a JSON object; see :func:`freeze_json`."""
    return FrozenMap(
        (_json_key(k, where), freeze_json(v, member(where, k))) for k, v in value.items()
    )


def thaw_json(value: JsonValue) -> Any:
    """Turn a frozen JSON value back into plain dicts and lists for ``json.dumps``."""
    if isinstance(value, Mapping):
        return {k: thaw_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw_json(v) for v in value]
    return value


def member(where: str, key: object) -> str:
    """Extend the location ``where`` by the member ``key`` (``a.b``)."""
    return f"{where}.{key}" if where else str(key)


def _json_key(key: object, where: str) -> str:
    if not isinstance(key, str):
        raise StreamFormatError(where, f"key {key!r} is not a string")
    return key


def _freeze_attrs(
    obj: object, attrs: Mapping[str, JsonValue], reserved: frozenset[str], where: str
) -> None:
    clash = reserved.intersection(attrs)
    if clash:
        raise ValueError(f"{where}: attrs may not hold the reserved keys {sorted(clash)}")
    object.__setattr__(obj, "attrs", freeze_mapping(attrs, where))


def _freeze_children(obj: object, name: str, children: Mapping[str, Any], where: str) -> None:
    for key, child in children.items():
        if child.name != key:
            raise ValueError(f"{where}: {name}[{key!r}] holds a child named {child.name!r}")
    object.__setattr__(obj, name, FrozenMap(children))


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One file (if ``path`` is set) or one informational entry of a version."""

    name: str
    path: str | None = None
    sha256: str | None = None
    size: int | None = None
    attrs: Mapping[str, JsonValue] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        _freeze_attrs(self, self.attrs, ITEM_KEYS, f"item {self.name!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Version:
    """A version (serial) of a product: a named set of items."""

    name: str
    attrs: Mapping[str, JsonValue] = field(default_factory=FrozenMap)
    items: Mapping[str, Item] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        _freeze_attrs(self, self.attrs, VERSION_KEYS, f"version {self.name!r}")
        _freeze_children(self, "items", self.items, f"version {self.name!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    """A product with its attributes and its versions by name."""

    name: str
    attrs: Mapping[str, JsonValue] = field(default_factory=FrozenMap)
    versions: Mapping[str, Version] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        _freeze_attrs(self, self.attrs, PRODUCT_KEYS, f"product {self.name!r}")
        _freeze_children(self, "versions", self.versions, f"product {self.name!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductList:
    """A ``products:1.0`` document; ``attrs`` holds its other top-level keys."""

    content_id: str
    format: str = PRODUCTS_FORMAT
    datatype: str | None = None
    updated: str | None = None
    attrs: Mapping[str, JsonValue] = field(default_factory=FrozenMap)
    products: Mapping[str, Product] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        _freeze_attrs(self, self.attrs, PRODUCT_LIST_KEYS, f"products {self.content_id!r}")
        _freeze_children(self, "products", self.products, f"products {self.content_id!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexEntry:
    """One ``index`` entry; ``path`` is None for informational entries."""

    content_id: str
    path: str | None = None
    format: str | None = None
    datatype: str | None = None
    updated: str | None = None
    products: tuple[str, ...] = ()
    attrs: Mapping[str, JsonValue] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        _freeze_attrs(self, self.attrs, INDEX_ENTRY_KEYS, f"index entry {self.content_id!r}")
        object.__setattr__(self, "products", tuple(self.products))


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    """An ``index:1.0`` document: content id -> :class:`IndexEntry`."""

    format: str = INDEX_FORMAT
    updated: str | None = None
    attrs: Mapping[str, JsonValue] = field(default_factory=FrozenMap)
    entries: Mapping[str, IndexEntry] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        _freeze_attrs(self, self.attrs, INDEX_KEYS, "index")
        for key, entry in self.entries.items():
            if entry.content_id != key:
                raise ValueError(f"index: entries[{key!r}] holds {entry.content_id!r}")
        object.__setattr__(self, "entries", FrozenMap(self.entries))


ITEM_KEYS = frozenset({"path", "sha256", "size"})
VERSION_KEYS = frozenset({"items"})
PRODUCT_KEYS = frozenset({"versions"})
PRODUCT_LIST_KEYS = frozenset(
    {"format", "content_id", "datatype", "updated", "products", "_aliases"}
)
INDEX_ENTRY_KEYS = frozenset({"path", "format", "datatype", "updated", "products"})
INDEX_KEYS = frozenset({"format", "updated", "index"})


@dataclass(frozen=True, slots=True, kw_only=True)
class FlatItem:
    """An item with every scalar inherited from its version, product and document.

    ``fields`` holds each inherited scalar as a string (deeper levels win;
    numbers via ``str()``, booleans as ``True``/``False`` like sstream-mirror,
    lists, dicts and nulls dropped) plus ``content_id``, ``product_name``,
    ``version_name`` and ``item_name``. Filters match against ``fields``.
    """

    content_id: str
    product_name: str
    version_name: str
    item_name: str
    path: str | None
    sha256: str | None
    size: int | None
    fields: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", FrozenMap(self.fields))

    @property
    def location(self) -> str:
        """Where the item sits in its products document, for error messages."""
        return (
            f"{self.content_id}: products[{self.product_name}]"
            f".versions[{self.version_name}].items[{self.item_name}]"
        )


def _overlay(fields: dict[str, str], attrs: Mapping[str, JsonValue]) -> None:
    for key, value in attrs.items():
        if isinstance(value, str):
            fields[key] = value
        elif isinstance(value, bool | int | float):
            fields[key] = str(value)


def product_fields(product_list: ProductList, product: Product) -> dict[str, str]:
    """Return the flattened scalars of the document and ``product`` (no version/item)."""
    fields: dict[str, str] = {}
    _overlay(fields, product_list.attrs)
    _overlay(
        fields,
        {
            "content_id": product_list.content_id,
            "format": product_list.format,
            "datatype": product_list.datatype,
            "updated": product_list.updated,
        },
    )
    _overlay(fields, product.attrs)
    fields["product_name"] = product.name
    return fields


def flatten(product_list: ProductList) -> list[FlatItem]:
    """Return one :class:`FlatItem` per item, sorted by product, version and item name."""
    flat: list[FlatItem] = []
    for pname in sorted(product_list.products):
        product = product_list.products[pname]
        base = product_fields(product_list, product)
        for vname in sorted(product.versions):
            version = product.versions[vname]
            vfields = dict(base)
            _overlay(vfields, version.attrs)
            vfields["version_name"] = vname
            for iname in sorted(version.items):
                item = version.items[iname]
                fields = dict(vfields)
                _overlay(fields, item.attrs)
                _overlay(fields, {"path": item.path, "sha256": item.sha256, "size": item.size})
                fields["item_name"] = iname
                flat.append(
                    FlatItem(
                        content_id=product_list.content_id,
                        product_name=pname,
                        version_name=vname,
                        item_name=iname,
                        path=item.path,
                        sha256=item.sha256,
                        size=item.size,
                        fields=fields,
                    )
                )
    return flat
