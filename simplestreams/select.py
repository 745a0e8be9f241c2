"""Choosing what to keep from a products document.

Each function returns a pruned :class:`ProductList` that can be rendered again:
items that were not chosen go, then versions left without items, then
products left without versions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from simplestreams.images import ImageSpec, Selection, image_spec_of, is_bootloader, matches_any
from simplestreams.models import FlatItem, Product, ProductList, Version, flatten, product_fields


def _has_download(version: Version) -> bool:
    return any(item.path is not None for item in version.items.values())


def newest_versions(product_list: ProductList, keep: int = 1) -> ProductList:
    """Keep, per product, the ``keep`` largest version names (plain string order).

    Versions without a downloadable item are not candidates and are dropped,
    as are products left with no version. Raises ValueError if ``keep < 1``.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    products: dict[str, Product] = {}
    for name, product in product_list.products.items():
        candidates = [v for v, version in product.versions.items() if _has_download(version)]
        chosen = set(sorted(candidates, reverse=True)[:keep])
        if chosen:
            versions = {v: version for v, version in product.versions.items() if v in chosen}
            products[name] = replace(product, versions=versions)
    return replace(product_list, products=products)


def filter_items(product_list: ProductList, predicate: Callable[[FlatItem], bool]) -> ProductList:
    """Keep the items whose flattened view passes ``predicate``, then prune empties."""
    kept = {
        (f.product_name, f.version_name, f.item_name) for f in flatten(product_list) if predicate(f)
    }
    products: dict[str, Product] = {}
    for pname, product in product_list.products.items():
        versions: dict[str, Version] = {}
        for vname, version in product.versions.items():
            items = {
                iname: item
                for iname, item in version.items.items()
                if (pname, vname, iname) in kept
            }
            if items:
                versions[vname] = replace(version, items=items)
        if versions:
            products[pname] = replace(product, versions=versions)
    return replace(product_list, products=products)


def product_specs(product_list: ProductList) -> dict[str, ImageSpec]:
    """Return the MAAS image spec of every product, by product name."""
    return {
        name: image_spec_of(product_fields(product_list, product))
        for name, product in product_list.products.items()
    }


def select_images(
    product_list: ProductList, selections: Iterable[Selection], *, include_bootloaders: bool = False
) -> ProductList:
    """Keep the products whose image spec passes any of ``selections``.

    An empty ``selections`` keeps everything (MAAS semantics, see
    :func:`simplestreams.images.matches_any`). With ``include_bootloaders``
    every bootloader product is kept too, as MAAS adds an implicit selection
    for each bootloader so machines can always PXE-boot.
    """
    chosen = tuple(selections)
    products: dict[str, Product] = {}
    for name, product in product_list.products.items():
        fields = product_fields(product_list, product)
        if (include_bootloaders and is_bootloader(fields)) or matches_any(
            chosen, image_spec_of(fields)
        ):
            products[name] = product
    return replace(product_list, products=products)
