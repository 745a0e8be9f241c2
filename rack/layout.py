"""Where a rack puts each file of the region's stream: MAAS's rack layout. Pure.

For the newest version of every product::

    <os>/<arch>/<subarch>/<release>/<label>/<file>     images (kernel, initrd, squashfs, ...)
    <os>/<arch>/generic/<release>/<label>/<file>       also, for GA kernels of the generic flavour
    <os>/<arch>/hwe-rolling.../<release>/<label>/<file> also, for products flagged ``rolling``
    bootloader/<bootloader-type>/<arch>/<file>         bootloaders (archives as shipped)
    maas.meta                                          what the snapshot holds (JSON)

``<file>`` is the last segment of the item's path. The plan places bootloader
items under ``bootloader/`` only: as MAAS racks do, the pull then unpacks their
archives beside them and links the files each boot method needs at the snapshot
root under MAAS's names (rack/bootloaders.py), so two architectures' archives of
one name (``grub2.tar.xz``) never compete for the root.

Names follow the one rule the region applies when it parses a stream
(:func:`simplestreams.served_path_problem`): no hidden segment, none over 255
bytes, a bounded path; no item may be named ``maas.meta``. An item that breaks
it, lacks a checksum, or loses its path to another item is refused, and so is
its whole product version (:class:`LeftOut`): a rack never publishes an image
without one of its files. Every other version is laid out.

A path claimed twice with different content keeps the first claim (by rack
path, then stream path); a real placement always wins over an alias (the generic and rolling
subarches), and alias clashes are dropped quietly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from common.rackproto import RackImage
from simplestreams import (
    FlatItem,
    ProductList,
    flatten,
    newest_versions,
    served_path_problem,
    served_segment_problem,
)

META_NAME = "maas.meta"
BOOTLOADER_DIR = "bootloader"
_BOOTLOADER_TYPE = "bootloader-type"
# Keys of a maas.meta leaf (MAAS's own), copied from the product when present.
_META_KEYS = (
    "content_id",
    "product_name",
    "version_name",
    "subarches",
    "release_codename",
    "release_title",
    "support_eol",
    "kflavor",
    _BOOTLOADER_TYPE,
    "os_title",
    "title",
)


@dataclass(frozen=True, slots=True)
class RackFile:
    """One file of a rack snapshot and the stream item it comes from."""

    relpath: str  # inside the snapshot
    sha256: str
    size: int
    source: str  # the item's path in the region's stream


@dataclass(frozen=True, slots=True)
class Skipped:
    """A stream item the layout could not place, and why."""

    location: str
    reason: str


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A product version left out whole because one of its items was refused."""

    content_id: str
    product: str
    version: str
    items: int  # how many items the version has
    reason: str  # the first refused item's location and why


@dataclass(frozen=True)
class RackLayout:
    """The planned content of one rack snapshot."""

    files: tuple[RackFile, ...]  # sorted by relpath; one blob may sit at several paths
    sources: tuple[FlatItem, ...]  # the stream items placed: what must be downloaded
    meta: Mapping[str, Any]  # maas.meta: os → arch → subarch → kflavor → release → label
    skipped: tuple[Skipped, ...]  # the items refused
    left_out: tuple[LeftOut, ...] = ()  # the versions they took with them

    @property
    def images(self) -> list[RackImage]:
        """The images this snapshot holds, as the rack reports them."""
        return images_from_meta(self.meta)

    def meta_json(self) -> bytes:
        """``maas.meta`` as written into the snapshot."""
        return json.dumps(self.meta, indent=1, sort_keys=True).encode() + b"\n"


_VersionKey = tuple[str, str, str]  # content_id, product, version
_Claim = tuple[bool, str, FlatItem]  # is_alias, relpath, item


def plan_layout(product_lists: Iterable[ProductList]) -> RackLayout:
    """Place the newest version of every product of ``product_lists`` (see module doc)."""
    versions: dict[_VersionKey, list[FlatItem]] = {}
    for product_list in product_lists:
        for item in flatten(newest_versions(product_list)):
            key = (item.content_id, item.product_name, item.version_name)
            versions.setdefault(key, []).append(item)
    skipped: list[Skipped] = []
    refused: dict[_VersionKey, Skipped] = {}
    claims: dict[_VersionKey, list[_Claim]] = {}
    for key, items in versions.items():
        placed = [(item, _placements(item)) for item in items]
        problems = [Skipped(item.location, p) for item, p in placed if isinstance(p, str)]
        if problems:
            skipped += problems
            refused[key] = problems[0]
            continue
        claims[key] = [
            (alias, relpath, item)
            for item, places in placed
            if not isinstance(places, str)
            for alias, relpath in places
        ]
    while True:  # a clash refuses its version; lay the rest out again without it
        files, sources, meta, clashes = _lay_out(
            [claim for key, held in claims.items() if key not in refused for claim in held]
        )
        if not clashes:
            break
        for key, clash in clashes.items():
            skipped.append(clash)
            refused[key] = clash
    left_out = [
        LeftOut(
            content_id=key[0],
            product=key[1],
            version=key[2],
            items=len(versions[key]),
            reason=f"{first.location}: {first.reason}",
        )
        for key, first in sorted(refused.items())
    ]
    return RackLayout(
        files=tuple(files),
        sources=tuple(sources),
        meta=meta,
        skipped=tuple(skipped),
        left_out=tuple(left_out),
    )


def _lay_out(
    claims: list[_Claim],
) -> tuple[list[RackFile], list[FlatItem], dict[str, Any], dict[_VersionKey, Skipped]]:
    """Files, sources and maas.meta of ``claims``, and the versions a real placement of
    which lost its path to another claim (the first such item of each)."""
    claims = sorted(claims, key=lambda claim: (claim[0], claim[1], claim[2].path or ""))
    tree = _Tree()
    files: list[RackFile] = []
    sources: list[FlatItem] = []
    meta: dict[str, Any] = {}
    clashes: dict[_VersionKey, Skipped] = {}
    for alias, relpath, item in claims:
        sha256, size, source = item.sha256 or "", item.size or 0, item.path or ""
        if not tree.holds(relpath, sha256):
            problem = tree.claim(relpath, sha256)
            if problem is not None:
                if not alias:
                    key = (item.content_id, item.product_name, item.version_name)
                    clashes.setdefault(key, Skipped(item.location, problem))
                continue
            files.append(RackFile(relpath=relpath, sha256=sha256, size=size, source=source))
        if not alias:
            sources.append(item)
            _add_meta(meta, item, relpath.rsplit("/", 1)[-1])
    files.sort(key=lambda f: f.relpath)
    return files, sources, meta, clashes


def _placements(item: FlatItem) -> list[tuple[bool, str]] | str:
    """(is_alias, relpath) for each place ``item`` goes, or why it cannot be placed."""
    missing = next((key for key in ("path", "sha256", "size") if getattr(item, key) is None), None)
    if missing is not None:
        return f"item: no {missing}"
    fields = item.fields
    name = (item.path or "").rsplit("/", 1)[-1]
    btype = fields.get(_BOOTLOADER_TYPE, "")
    needed = (
        ("os", "arch", _BOOTLOADER_TYPE, "label")
        if btype
        else ("os", "arch", "subarch", "release", "label")
    )
    for key in needed:
        problem = segment_problem(fields.get(key, ""))
        if problem is not None:
            return f"field {key}: {problem}"
    problem = segment_problem(name)
    if problem is not None:
        return f"file name: {problem}"
    if name == META_NAME:
        return f"file name: {name!r} is the name of the rack's own metadata file"
    problem = served_path_problem(item.path)
    if problem is not None:
        return f"path: {problem}"
    places = _places(item, name)
    problem = next(
        (p for _, relpath in places if (p := served_path_problem(relpath)) is not None), None
    )
    return places if problem is None else f"rack path: {problem}"


def _places(item: FlatItem, name: str) -> list[tuple[bool, str]]:
    fields = item.fields
    btype = fields.get(_BOOTLOADER_TYPE, "")
    if btype:
        return [(False, f"{BOOTLOADER_DIR}/{btype}/{fields['arch']}/{name}")]
    os_name, arch, subarch = fields["os"], fields["arch"], fields["subarch"]
    tail = f"{fields['release']}/{fields['label']}/{name}"
    places = [(False, f"{os_name}/{arch}/{subarch}/{tail}")]
    if subarch.startswith("ga-") and fields.get("kflavor", "generic") == "generic":
        places.append((True, f"{os_name}/{arch}/generic/{tail}"))
    parts = subarch.split("-")
    if fields.get("rolling") == "True" and len(parts) >= 2:
        parts[1] = "rolling"
        places.append((True, f"{os_name}/{arch}/{'-'.join(parts)}/{tail}"))
    return places


def segment_problem(value: str) -> str | None:
    """Why ``value`` cannot be one path segment of a snapshot, or None (the served-name
    rule, :func:`simplestreams.served_segment_problem`; an empty value is "missing")."""
    if not value:
        return "missing"
    return served_segment_problem(value)


class _Tree:
    """Claimed paths of a snapshot: a file may not sit where another file or a dir is."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {META_NAME: ""}
        self.dirs: set[str] = set()

    def holds(self, relpath: str, sha256: str) -> bool:
        """True when ``relpath`` is already claimed for the same content."""
        return self.files.get(relpath) == sha256 and relpath != META_NAME

    def claim(self, relpath: str, sha256: str) -> str | None:
        """Claim ``relpath`` for ``sha256``; why not, if it cannot be claimed."""
        if relpath in self.files:
            return f"{relpath} is already taken by other content"
        if relpath in self.dirs:
            return f"{relpath} is already a directory"
        parents = ["/".join(relpath.split("/")[:n]) for n in range(1, relpath.count("/") + 1)]
        clash = next((p for p in parents if p in self.files), None)
        if clash is not None:
            return f"{clash} is already a file"
        self.files[relpath] = sha256
        self.dirs.update(parents)
        return None


def _add_meta(meta: dict[str, Any], item: FlatItem, name: str) -> None:
    fields = item.fields
    btype = fields.get(_BOOTLOADER_TYPE, "")
    keys = (
        fields["os"],
        fields["arch"],
        fields.get("subarch") or "generic",
        fields.get("kflavor") or "generic",
        fields.get("release") or btype,
        fields["label"],
    )
    node = meta
    for key in keys:
        node = node.setdefault(key, {})
    for key in _META_KEYS:
        if key in fields:
            node[key] = fields[key]
    node.setdefault("files", {})[name] = {"sha256": item.sha256, "size": item.size}


def images_from_meta(meta: Mapping[str, Any]) -> list[RackImage]:
    """The images a ``maas.meta`` mapping describes, one per name and architecture.

    ``name`` is ``<os>/<release>`` (for bootloaders the release is the
    bootloader type); ``subarches`` lists every subarch held. Malformed parts
    are ignored.
    """
    found: dict[tuple[str, str], set[str]] = {}
    for os_name, arches in _children(meta):
        for arch, subarches in _children(arches):
            for subarch, kflavors in _children(subarches):
                for _kflavor, releases in _children(kflavors):
                    for release, _labels in _children(releases):
                        found.setdefault((f"{os_name}/{release}", arch), set()).add(subarch)
    return [
        RackImage(name=name, architecture=arch, subarches=sorted(subs))
        for (name, arch), subs in sorted(found.items())
    ]


def _children(node: object) -> list[tuple[str, Any]]:
    if not isinstance(node, Mapping):
        return []
    return [(key, value) for key, value in node.items() if isinstance(value, Mapping)]
