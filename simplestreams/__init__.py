"""The SimpleStreams format: parse, select, plan and render. Pure: no I/O, stdlib only."""

from simplestreams.errors import StreamFormatError
from simplestreams.filters import ItemFilter, matches_all, parse_filters
from simplestreams.images import (
    ImageSpec,
    Selection,
    image_spec_of,
    is_bootloader,
    matches_any,
    resource_architecture,
    resource_name,
    selection_matches,
)
from simplestreams.models import (
    INDEX_FORMAT,
    PRODUCTS_FORMAT,
    FlatItem,
    FrozenMap,
    Index,
    IndexEntry,
    Item,
    JsonValue,
    Product,
    ProductList,
    Version,
    flatten,
    product_fields,
)
from simplestreams.parse import parse_index, parse_products
from simplestreams.paths import check_safe_path, path_problem
from simplestreams.plan import Blob, DownloadPlan, plan_downloads
from simplestreams.render import index_to_dict, products_to_dict, render_index, render_products
from simplestreams.select import filter_items, newest_versions, product_specs, select_images

__all__ = [
    "INDEX_FORMAT",
    "PRODUCTS_FORMAT",
    "Blob",
    "DownloadPlan",
    "FlatItem",
    "FrozenMap",
    "ImageSpec",
    "Index",
    "IndexEntry",
    "Item",
    "ItemFilter",
    "JsonValue",
    "Product",
    "ProductList",
    "Selection",
    "StreamFormatError",
    "Version",
    "check_safe_path",
    "filter_items",
    "flatten",
    "image_spec_of",
    "index_to_dict",
    "is_bootloader",
    "matches_all",
    "matches_any",
    "newest_versions",
    "parse_filters",
    "parse_index",
    "parse_products",
    "path_problem",
    "plan_downloads",
    "product_fields",
    "product_specs",
    "products_to_dict",
    "render_index",
    "render_products",
    "resource_architecture",
    "resource_name",
    "select_images",
    "selection_matches",
]
