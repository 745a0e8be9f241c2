"""Strict parsers: JSON bytes, text or an already-decoded mapping -> models.

Every rule broken raises one :class:`StreamFormatError` whose location names
the source and the offending field, e.g.
``x.json: products[p].versions[v].items[squashfs].sha256: not 64 hex digits``.
:func:`parse_products` can instead refuse only the product version holding
the fault (``refusals``), and read the rest of the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from simplestreams.errors import Refusal, StreamFormatError, at
from simplestreams.models import (
    INDEX_ENTRY_KEYS,
    INDEX_FORMAT,
    INDEX_KEYS,
    ITEM_KEYS,
    PRODUCT_KEYS,
    PRODUCT_LIST_KEYS,
    PRODUCTS_FORMAT,
    VERSION_KEYS,
    Index,
    IndexEntry,
    Item,
    JsonValue,
    Product,
    ProductList,
    Version,
    freeze_mapping,
    member,
)
from simplestreams.paths import check_safe_path

Document = bytes | str | Mapping[str, Any]
Aliases = Mapping[str, Mapping[str, Mapping[str, Any]]]

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class _JsonRuleError(ValueError):
    """Raised from json.loads hooks; JSON itself allows what we refuse."""


def parse_index(data: Document, *, source: str = "") -> Index:
    """Parse an ``index:1.0`` document.

    Entries without ``path`` are kept (they are informational). Raises
    StreamFormatError for malformed JSON, a wrong ``format``, a wrongly typed
    field or an unsafe ``path``.
    """
    reader = _Reader(source)
    try:
        return reader.index(reader.load(data))
    except RecursionError:
        reader.fail("", "JSON nested too deeply")


def parse_products(
    data: Document, *, source: str = "", refusals: list[Refusal] | None = None
) -> ProductList:
    """Parse a ``products:1.0`` document, expanding ``_aliases``.

    Every item with a ``path`` must carry ``sha256`` (64 hex digits, stored
    lowercase) and ``size`` (a non-negative integer). Raises StreamFormatError
    for malformed JSON, a wrong ``format``, a wrongly typed field, a missing
    checksum or size, or an unsafe ``path``.

    With ``refusals`` (a list), a fault inside a product version (one of its
    items, or the version itself) refuses only that version: it is left out,
    the fault is appended as a :class:`Refusal`, and a product left without a
    version is left out too. What is wrong with the document itself, its
    ``_aliases`` or a product outside its versions still raises.
    """
    reader = _Reader(source, refusals)
    try:
        return reader.product_list(reader.load(data))
    except RecursionError:
        reader.fail("", "JSON nested too deeply")


# bool before numbers: True is an int to Python but not to JSON.
_JSON_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),
    ((int, float), "a number"),
    (str, "a string"),
    ((list, tuple), "an array"),
    (Mapping, "an object"),
)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    for kind, name in _JSON_TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers could disagree on which duplicate wins; refuse the ambiguity.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _JsonRuleError(f"duplicate key {key!r} in a JSON object")
        obj[key] = value
    return obj


def _no_constants(name: str) -> NoReturn:
    raise _JsonRuleError(f"{name} is not valid JSON")


class _Reader:
    """Typed field access that reports failures at a location in one source."""

    def __init__(self, source: str, refusals: list[Refusal] | None = None) -> None:
        self.source = source
        self.refusals = refusals  # None: strict, the first fault raises

    def fail(self, path: str, reason: str) -> NoReturn:
        raise StreamFormatError(at(self.source, path), reason)

    def load(self, data: Document) -> Mapping[str, Any]:
        if isinstance(data, Mapping):
            return data
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            doc = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
        except UnicodeDecodeError as exc:
            self.fail(f"byte {exc.start}", "not valid UTF-8")
        except json.JSONDecodeError as exc:
            self.fail(f"line {exc.lineno} column {exc.colno}", f"malformed JSON: {exc.msg}")
        except _JsonRuleError as exc:
            self.fail("", str(exc))
        return self.obj(doc, "")

    def index(self, doc: Mapping[str, Any]) -> Index:
        self.check_format(doc, INDEX_FORMAT)
        entries = {}
        for content_id, raw in self.obj(doc.get("index"), "index").items():
            self.name(content_id, "index", "content id")
            entries[content_id] = self.index_entry(content_id, raw)
        return Index(
            updated=self.opt_str(doc, "updated", ""),
            attrs=self.attrs(doc, INDEX_KEYS, ""),
            entries=entries,
        )

    def product_list(self, doc: Mapping[str, Any]) -> ProductList:
        self.check_format(doc, PRODUCTS_FORMAT)
        content_id = self.opt_str(doc, "content_id", "")
        if not content_id:
            self.fail("content_id", "missing or empty")
        aliases = self.aliases(doc.get("_aliases", {}))
        products = {}
        for name, raw in self.obj(doc.get("products"), "products").items():
            self.name(name, "products", "product name")
            product = self.product(name, raw, aliases)
            if product is not None:
                products[name] = product
        return ProductList(
            content_id=content_id,
            datatype=self.opt_str(doc, "datatype", ""),
            updated=self.opt_str(doc, "updated", ""),
            attrs=self.attrs(doc, PRODUCT_LIST_KEYS, ""),
            products=products,
        )

    def check_format(self, doc: Mapping[str, Any], expected: str) -> None:
        if "format" not in doc:
            self.fail("format", f"missing; expected {expected!r}")
        if doc["format"] != expected:
            self.fail("format", f"expected {expected!r}, got {doc['format']!r}")

    def obj(self, value: object, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected an object, got {_json_type(value)}")
        return value

    def name(self, name: object, path: str, kind: str) -> None:
        if not isinstance(name, str) or not name:
            self.fail(path, f"{kind} {name!r} must be a non-empty string")

    def opt_str(self, obj: Mapping[str, Any], key: str, path: str) -> str | None:
        if key not in obj:
            return None
        value = obj[key]
        if not isinstance(value, str):
            self.fail(member(path, key), f"expected a string, got {_json_type(value)}")
        return value

    def attrs(
        self, obj: Mapping[str, Any], reserved: frozenset[str], path: str
    ) -> Mapping[str, JsonValue]:
        return freeze_mapping({k: v for k, v in obj.items() if k not in reserved}, path)

    def aliases(self, value: object) -> Aliases:
        groups = self.obj(value, "_aliases")
        for key, group in groups.items():
            for name, merged in self.obj(group, f"_aliases[{key}]").items():
                self.obj(merged, f"_aliases[{key}][{name}]")
        return groups

    def expand(self, obj: Mapping[str, Any], aliases: Aliases) -> Mapping[str, Any]:
        """Merge ``_aliases[K][V]`` into ``obj`` for each ``K: V``; own keys win."""
        if not aliases:
            return obj
        merged = dict(obj)
        for key, value in obj.items():
            if isinstance(value, str) and value in aliases.get(key, {}):
                for akey, avalue in aliases[key][value].items():
                    merged.setdefault(akey, avalue)
        return merged

    def product(self, name: str, raw: object, aliases: Aliases) -> Product | None:
        """The product; None when it had versions and every one was refused."""
        path = f"products[{name}]"
        obj = self.expand(self.obj(raw, path), aliases)
        versions = {}
        listed = self.obj(obj.get("versions", {}), f"{path}.versions")
        for vname, vraw in listed.items():
            self.name(vname, f"{path}.versions", "version name")
            try:
                versions[vname] = self.version(vname, vraw, f"{path}.versions[{vname}]", aliases)
            except StreamFormatError as exc:
                if self.refusals is None:
                    raise
                self.refusals.append(Refusal(exc.location, exc.reason))
        if listed and not versions:
            return None
        return Product(name=name, attrs=self.attrs(obj, PRODUCT_KEYS, path), versions=versions)

    def version(self, name: str, raw: object, path: str, aliases: Aliases) -> Version:
        obj = self.expand(self.obj(raw, path), aliases)
        items = {}
        for iname, iraw in self.obj(obj.get("items", {}), f"{path}.items").items():
            self.name(iname, f"{path}.items", "item name")
            items[iname] = self.item(iname, iraw, f"{path}.items[{iname}]", aliases)
        return Version(name=name, attrs=self.attrs(obj, VERSION_KEYS, path), items=items)

    def item(self, name: str, raw: object, path: str, aliases: Aliases) -> Item:
        obj = self.expand(self.obj(raw, path), aliases)
        item_path = self.opt_str(obj, "path", path)
        if item_path is not None:
            check_safe_path(item_path, at(self.source, f"{path}.path"))
        sha256 = self.sha256(obj, path)
        size = self.size(obj, path)
        if item_path is not None and sha256 is None:
            self.fail(f"{path}.sha256", "missing; an item with a path needs a sha256")
        if item_path is not None and size is None:
            self.fail(f"{path}.size", "missing; an item with a path needs a size")
        return Item(
            name=name,
            path=item_path,
            sha256=sha256,
            size=size,
            attrs=self.attrs(obj, ITEM_KEYS, path),
        )

    def sha256(self, obj: Mapping[str, Any], path: str) -> str | None:
        value = self.opt_str(obj, "sha256", path)
        if value is not None and not _SHA256.fullmatch(value):
            self.fail(f"{path}.sha256", "not 64 hex digits")
        return None if value is None else value.lower()

    def size(self, obj: Mapping[str, Any], path: str) -> int | None:
        if "size" not in obj:
            return None
        value = obj["size"]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{path}.size", f"expected an integer, got {_json_type(value)}")
        if value < 0:
            self.fail(f"{path}.size", f"must not be negative, got {value}")
        return value

    def index_entry(self, content_id: str, raw: object) -> IndexEntry:
        path = f"index[{content_id}]"
        obj = self.obj(raw, path)
        entry_path = self.opt_str(obj, "path", path)
        if entry_path is not None:
            check_safe_path(entry_path, at(self.source, f"{path}.path"))
        products = obj.get("products", [])
        if not isinstance(products, list | tuple) or not all(isinstance(p, str) for p in products):
            self.fail(f"{path}.products", "expected an array of strings")
        return IndexEntry(
            content_id=content_id,
            path=entry_path,
            format=self.opt_str(obj, "format", path),
            datatype=self.opt_str(obj, "datatype", path),
            updated=self.opt_str(obj, "updated", path),
            products=tuple(products),
            attrs=self.attrs(obj, INDEX_ENTRY_KEYS, path),
        )
