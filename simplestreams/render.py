"""Models -> canonical JSON documents.

Output is deterministic: sorted keys, ``indent=1``, ASCII escapes (valid UTF-8
for any string, even one holding a lone surrogate) and a trailing newline, so
two renders of equal models are byte-identical and
``parse(render(x)) == x`` holds.
"""

from __future__ import annotations

import json
from typing import Any

from simplestreams.models import (
    Index,
    IndexEntry,
    Item,
    Product,
    ProductList,
    Version,
    thaw_json,
)


def _with_attrs(obj: Any, fields: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = thaw_json(obj.attrs)
    doc.update({k: v for k, v in fields.items() if v is not None})
    return doc


def _item_to_dict(item: Item) -> dict[str, Any]:
    return _with_attrs(item, {"path": item.path, "sha256": item.sha256, "size": item.size})


def _version_to_dict(version: Version) -> dict[str, Any]:
    items = {name: _item_to_dict(item) for name, item in version.items.items()}
    return _with_attrs(version, {"items": items})


def _product_to_dict(product: Product) -> dict[str, Any]:
    versions = {name: _version_to_dict(v) for name, v in product.versions.items()}
    return _with_attrs(product, {"versions": versions})


def products_to_dict(product_list: ProductList) -> dict[str, Any]:
    """Return the ``products:1.0`` document for ``product_list`` as plain JSON data."""
    products = {name: _product_to_dict(p) for name, p in product_list.products.items()}
    return _with_attrs(
        product_list,
        {
            "format": product_list.format,
            "content_id": product_list.content_id,
            "datatype": product_list.datatype,
            "updated": product_list.updated,
            "products": products,
        },
    )


def _entry_to_dict(entry: IndexEntry) -> dict[str, Any]:
    return _with_attrs(
        entry,
        {
            "path": entry.path,
            "format": entry.format,
            "datatype": entry.datatype,
            "updated": entry.updated,
            "products": list(entry.products) or None,
        },
    )


def index_to_dict(index: Index) -> dict[str, Any]:
    """Return the ``index:1.0`` document for ``index`` as plain JSON data."""
    entries = {cid: _entry_to_dict(entry) for cid, entry in index.entries.items()}
    return _with_attrs(index, {"format": index.format, "updated": index.updated, "index": entries})


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8")


def render_products(product_list: ProductList) -> bytes:
    """Render ``product_list`` as canonical ``products:1.0`` JSON bytes."""
    return _dump(products_to_dict(product_list))


def render_index(index: Index) -> bytes:
    """Render ``index`` as canonical ``index:1.0`` JSON bytes."""
    return _dump(index_to_dict(index))
