"""Screening a parsed products document: refuse, version by version, what could not be held.

A signed document may still list an item nobody could store or serve: a path
segment longer than a file name may be, a hidden (dot) name the servers answer
404 for, a path into a mirror's own state, a size no disk holds. Such an item
is refused, and with it its whole product version (an image never goes out
lacking one of its files); every other version stays. Each refusal names the
document and the field, e.g.
``…/v3:download.sjson: products[p].versions[v].items[boot-kernel].path: path segment … is 300 bytes, more than 255``.

The names rule is :func:`simplestreams.paths.served_path_problem`, the one the
region applies when it imports and a rack when it lays a snapshot out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from simplestreams.errors import Refusal, at
from simplestreams.images import BOOTLOADER_TYPE, image_spec_of
from simplestreams.models import FlatItem, JsonValue, Product, ProductList, Version, flatten
from simplestreams.paths import served_path_problem, served_segment_problem

__all__ = ["DEFAULT_MAX_ITEM_SIZE", "Refusal", "Screened", "screen_products"]

DEFAULT_MAX_ITEM_SIZE = 64 << 30
"""The largest item (bytes) accepted unless configured otherwise: 64 GiB."""


@dataclass(frozen=True, slots=True)
class Screened:
    """A products document without its refused versions, and the refusals."""

    products: ProductList
    refusals: tuple[Refusal, ...] = ()


def screen_products(
    product_list: ProductList,
    *,
    source: str = "",
    max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
    image_names: bool = False,
) -> Screened:
    """Drop every version holding an item that could not be held; say why for each.

    An item with a ``path`` is refused when the path could not be served
    (:func:`served_path_problem`) or its ``size`` exceeds ``max_item_size``.
    With ``image_names`` (a region, whose images are laid out by name), a
    version is also refused when its name, or an os, arch, subarch, release
    (bootloader type) or label its items would be published under, is not a
    served path segment. Products left without a version go too. ``source``
    (the document's URL) prefixes each refusal's location. One refusal per
    version: the first problem found.
    """
    by_version: dict[tuple[str, str], list[FlatItem]] = {}
    if image_names:
        for item in flatten(product_list):
            by_version.setdefault((item.product_name, item.version_name), []).append(item)
    refusals: list[Refusal] = []
    products: dict[str, Product] = {}
    for pname, product in product_list.products.items():
        versions: dict[str, Version] = {}
        for vname, version in product.versions.items():
            flat = by_version.get((pname, vname), [])
            problem = next(
                _problems(product, version, flat, max_item_size, image_names=image_names), None
            )
            if problem is None:
                versions[vname] = version
            else:
                refusals.append(Refusal(at(source, problem[0]), problem[1]))
        if len(versions) == len(product.versions):
            products[pname] = product
        elif versions:
            products[pname] = dataclasses.replace(product, versions=versions)
    if not refusals:
        return Screened(product_list)
    return Screened(dataclasses.replace(product_list, products=products), tuple(refusals))


def _problems(
    product: Product,
    version: Version,
    flat: list[FlatItem],
    max_item_size: int,
    *,
    image_names: bool,
) -> Iterator[tuple[str, str]]:
    """(location, reason) of each problem of ``version``, first found first."""
    where = f"products[{product.name}].versions[{version.name}]"
    if image_names:
        problem = served_segment_problem(version.name)
        if problem is not None:
            yield where, f"version name: {problem}"
    for iname, item in version.items.items():
        if item.path is None:
            continue
        problem = served_path_problem(item.path)
        if problem is not None:
            yield f"{where}.items[{iname}].path", problem
        if item.size is not None and item.size > max_item_size:
            yield (
                f"{where}.items[{iname}].size",
                f"{item.size} bytes is more than the largest item allowed ({max_item_size} bytes)",
            )
    for flat_item in flat if image_names else ():
        if flat_item.path is not None:
            yield from _name_problems(product, version, flat_item)


def _name_problems(product: Product, version: Version, item: FlatItem) -> Iterator[tuple[str, str]]:
    """Problems of the names ``item`` would be published under (os/arch/subarch/release/label)."""
    spec = image_spec_of(item.fields)
    release_key = BOOTLOADER_TYPE if spec.bootloader_type else "release"
    for key, value in (
        ("os", spec.os),
        ("arch", spec.arch),
        ("subarch", spec.subarch),
        (release_key, spec.release),
        ("label", spec.label),
    ):
        problem = served_segment_problem(value)
        if problem is not None:
            yield _defined_at(product, version, item.item_name, key), f"{key}: {problem}"


def _defined_at(product: Product, version: Version, item_name: str, key: str) -> str:
    """The location of ``key`` at the deepest level that sets it (deeper levels win)."""
    where = f"products[{product.name}]"
    levels: tuple[tuple[str, Mapping[str, JsonValue]], ...] = (
        (f"{where}.versions[{version.name}].items[{item_name}]", version.items[item_name].attrs),
        (f"{where}.versions[{version.name}]", version.attrs),
        (where, product.attrs),
    )
    return next((f"{loc}.{key}" for loc, attrs in levels if key in attrs), key)
