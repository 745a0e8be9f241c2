"""What a mirror holds across runs: selections accumulate unless ``--delete`` is given.

MAAS's local-mirror recipe runs the mirror twice into one directory, kernels
first and bootloaders (``os~(grub*|pxelinux)``) second, and expects both. So a
run does not replace the mirror's selection with its own; it adds to it:

- a product the current filters select gets the upstream's current versions,
  keeps its earlier versions the upstream still lists (items of one version
  merge, so ``ftype=squashfs`` then ``ftype=boot-kernel`` holds both), and
  then only its newest ``--max`` versions;
- a product the current filters do not select stays exactly as an earlier run
  left it (its files stay in the store), even once the upstream moves on.

``--delete`` starts from nothing instead: what no current filter selects goes.
The selection is kept in the mirror's state (``.bootsync/state.json``), as the
products documents and index entries the mirror's own metadata is made from;
a mirror made before that is read from its own published ``index.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simplestreams import (
    Index,
    IndexEntry,
    Product,
    ProductList,
    StreamFormatError,
    index_to_dict,
    newest_versions,
    parse_index,
    parse_products,
    products_to_dict,
)


@dataclass(frozen=True)
class MirrorSelection:
    """Per content id: its upstream index entry and the products document the mirror holds."""

    entries: Mapping[str, IndexEntry] = field(default_factory=dict)
    products: Mapping[str, ProductList] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.entries) != set(self.products):
            raise ValueError("a selection needs one index entry per products document")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data for the mirror's state file."""
        index = Index(entries=self.entries)
        return {
            "index": index_to_dict(index),
            "products": {cid: products_to_dict(p) for cid, p in self.products.items()},
        }

    @classmethod
    def from_json(cls, data: object, *, source: str) -> MirrorSelection:
        """Parse what :meth:`to_json` wrote; StreamFormatError at ``source`` if it is not that."""
        if not isinstance(data, Mapping) or not isinstance(data.get("products"), Mapping):
            raise StreamFormatError(f"{source}: selection", "expected an index and products")
        index = parse_index(data.get("index", {}), source=f"{source}: selection.index")
        products = {
            cid: parse_products(doc, source=f"{source}: selection.products[{cid}]")
            for cid, doc in data["products"].items()
        }
        for cid, doc in products.items():
            if doc.content_id != cid or cid not in index.entries:
                raise StreamFormatError(
                    f"{source}: selection.products[{cid}]", "does not match its index entry"
                )
        return cls(entries={cid: index.entries[cid] for cid in products}, products=products)


def published_selection(root: Path) -> MirrorSelection:
    """The selection a mirror's own published metadata lists (``streams/v1/index.json``).

    For a mirror made before selections were kept in its state; blocking I/O.
    """
    index_file = root / "streams" / "v1" / "index.json"
    try:
        index = parse_index(index_file.read_bytes(), source=str(index_file))
    except FileNotFoundError:
        return MirrorSelection()
    entries: dict[str, IndexEntry] = {}
    products: dict[str, ProductList] = {}
    for cid, entry in index.entries.items():
        if entry.path is None:
            continue
        document = root / entry.path
        try:
            products[cid] = parse_products(document.read_bytes(), source=str(document))
        except FileNotFoundError:
            continue
        entries[cid] = entry
    return MirrorSelection(entries=entries, products=products)


def accumulate(
    previous: MirrorSelection,
    current: MirrorSelection,
    upstream: Mapping[str, ProductList],
    *,
    keep: int,
) -> MirrorSelection:
    """The mirror's selection after a run that selected ``current`` (see the module doc).

    ``upstream`` is every products document the source lists now, by content id.
    Content ids come in the current run's order, then earlier ones.
    """
    entries: dict[str, IndexEntry] = {}
    products: dict[str, ProductList] = {}
    for cid in dict.fromkeys([*current.products, *previous.products]):
        now, before = current.products.get(cid), previous.products.get(cid)
        if now is None:
            assert before is not None
            merged = before
        elif before is None:
            merged = now
        else:
            merged = _union(before, now, upstream.get(cid))
        kept = newest_versions(merged, keep=keep)
        if kept.products:
            entries[cid] = current.entries.get(cid) or previous.entries[cid]
            products[cid] = kept
    return MirrorSelection(entries=entries, products=products)


def _union(before: ProductList, now: ProductList, upstream: ProductList | None) -> ProductList:
    """``now`` plus what ``before`` held (of a product ``now`` selects: what upstream still lists)."""
    products: dict[str, Product] = dict(before.products)
    for name, product in now.products.items():
        earlier = before.products.get(name)
        if earlier is None:
            products[name] = product
            continue
        listed = upstream.products[name].versions if upstream and name in upstream.products else {}
        versions = {v: ver for v, ver in earlier.versions.items() if v in listed}
        for vname, version in product.versions.items():
            prior = versions.get(vname)
            versions[vname] = (
                version
                if prior is None
                else replace(version, items={**prior.items, **version.items})
            )
        products[name] = replace(product, versions=versions)
    return replace(now, products=products)
