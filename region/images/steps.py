"""The import's settings, summary and decisions (plain functions over data).

:func:`choose_images` turns source descriptions and selections into the sets
to hold; :func:`plan_blobs` plans their downloads with
:func:`simplestreams.plan_downloads`; :func:`plan_removals` decides which
images go, which stay because a selection still names them, and whether the
safety valve must refuse; :func:`is_rollback` (the index) and
:func:`products_rollback` (each products document) are the rollback guard's tests.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.hostarch import DEBIAN_ARCHES
from common.ops.logging import get_logger
from common.transfer.fetch import join_url
from common.transfer.limits import TransferLimits
from region.config import (
    DEFAULT_IMPORT_CONCURRENCY,
    DEFAULT_SOURCE_URL,
    RegionConfig,
    shipped_keyring,
)
from region.db.config import DEFAULT_RELEASE as DEFAULT_DB_RELEASE
from region.db.imported_products import ImportedProducts
from region.db.imports import WantedFile, WantedSet
from region.db.resources import ResourceKey, ResourceRow
from region.images.catalogue import (
    ProductsMark,
    SourceDescription,
    parse_updated,
    product_title,
)
from region.images.publish import KEEP_SNAPSHOTS
from simplestreams import (
    DownloadPlan,
    FlatItem,
    ImageSpec,
    ProductList,
    Selection,
    flatten,
    image_spec_of,
    path_problem,
    plan_downloads,
    product_fields,
    resource_architecture,
    resource_name,
    select_images,
    selection_matches,
)

log = get_logger("importer")

# MAAS's BootResourceFile types; any other ftype (e.g. ``manifest``) is not imported.
FILETYPES = frozenset(
    {
        "root-tgz",
        "root-tbz",
        "root-txz",
        "root-dd",
        "root-dd.tar",
        "root-dd.raw",
        "root-dd.bz2",
        "root-dd.gz",
        "root-dd.xz",
        "root-dd.tar.bz2",
        "root-dd.tar.xz",
        "root-image.gz",
        "squashfs",
        "boot-kernel",
        "boot-initrd",
        "boot-dtb",
        "bootloader",
        "archive.tar.xz",
    }
)
FILE_EXTRAS = ("kpackage", "kparams", "src_package", "src_release", "src_version")
RESOURCE_EXTRAS = (
    "platform",
    "supported_platforms",
    "support_eol",
    "release_title",
    "release_codename",
)
# No user selection: MAAS's implicit bootloader selections still apply, but an
# empty list must not mean "everything".
_MATCHES_NOTHING = Selection(os="", release="", arches=(), subarches=(), labels=())
DEFAULT_RELEASE = DEFAULT_DB_RELEASE  # the latest LTS, hard-coded as MAAS does


@dataclass(frozen=True)
class ImportSettings:
    """How the importer behaves; the daemon fills it from its config."""

    create_default_source: bool = True
    default_source_url: str = DEFAULT_SOURCE_URL
    default_keyring: Path = field(default_factory=shipped_keyring)
    default_release: str = DEFAULT_RELEASE
    concurrency: int = DEFAULT_IMPORT_CONCURRENCY
    progress_interval_s: float = 0.5
    keep_snapshots: int = KEEP_SNAPSHOTS
    proxy: str = ""  # the config file's; the API's http_proxy wins
    transfer: TransferLimits = field(default_factory=TransferLimits)  # minimum rate of downloads

    @classmethod
    def from_config(cls, config: RegionConfig) -> ImportSettings:
        """The settings the daemon's configuration asks for."""
        return cls(
            create_default_source=config.create_default_source,
            default_source_url=config.default_source_url,
            default_keyring=config.default_keyring,
            concurrency=config.import_concurrency,
            proxy=config.http_proxy,
            transfer=config.transfer,
        )


@dataclass(frozen=True)
class ImportSummary:
    """The outcome of one import, as logged in ``import_finished``."""

    outcome: str  # ok, failed, cancelled or skipped
    reason: str
    sources: tuple[str, ...] = ()
    images_added: int = 0
    images_removed: int = 0
    images_kept: int = 0
    files_fetched: int = 0
    files_reused: int = 0
    files_failed: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    published: bool = False
    sources_changed: bool = False
    errors: tuple[str, ...] = ()
    failure: str | None = None  # a named failure of the whole import: "no_space"
    space_needed: int | None = None  # with no_space: bytes the import needed to write
    space_free: int | None = None  # with no_space: bytes free on the store's disk


@dataclass
class Tally:
    """What an import has done so far (becomes its summary)."""

    reason: str
    started: float = field(default_factory=time.monotonic)
    sources: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    source_failed: bool = False
    images_added: int = 0
    images_removed: int = 0
    images_kept: int = 0
    files_fetched: int = 0
    files_reused: int = 0
    files_failed: int = 0
    bytes: int = 0
    published: bool = False
    sources_changed: bool = False
    bytes_to_write: int = 0  # what the download plan still had to bring in
    failure: str | None = None
    space_needed: int | None = None
    space_free: int | None = None

    def summary(self, outcome: str) -> ImportSummary:
        """The summary of the import so far, ending with ``outcome``."""
        return ImportSummary(
            outcome=outcome,
            reason=self.reason,
            sources=tuple(self.sources),
            images_added=self.images_added,
            images_removed=self.images_removed,
            images_kept=self.images_kept,
            files_fetched=self.files_fetched,
            files_reused=self.files_reused,
            files_failed=self.files_failed,
            bytes=self.bytes,
            duration_s=round(time.monotonic() - self.started, 3),
            published=self.published,
            sources_changed=self.sources_changed,
            errors=tuple(self.errors),
            failure=self.failure,
            space_needed=self.space_needed,
            space_free=self.space_free,
        )


def default_arches(machine: str | None = None) -> list[str]:
    """``amd64`` plus this host's architecture (Debian name), for the default selection."""
    host = DEBIAN_ARCHES.get((machine or platform.machine()).lower())
    return ["amd64"] if host in (None, "amd64") else ["amd64", host]


@dataclass(frozen=True)
class Chosen:
    """A set to hold and where each of its blobs comes from."""

    source_id: int
    wanted: WantedSet
    urls: Mapping[str, str]  # sha256 -> URL
    items: tuple[FlatItem, ...] = ()  # the stream items of its files (paths under the source)


def _safe(spec: ImageSpec) -> bool:
    parts = (spec.os, spec.release, spec.arch, spec.subarch)
    return all(p and path_problem(p) is None and "/" not in p for p in parts)


def wanted_set(products: ProductList, name: str) -> WantedSet | None:
    """The set product ``name`` (one version) asks for; None if it has no usable file."""
    product = products.products[name]
    fields = product_fields(products, product)
    spec = image_spec_of(fields)
    version = max(product.versions.values(), key=lambda v: v.name)
    items = {
        i: it
        for i, it in version.items.items()
        if it.path and it.sha256 and it.size is not None and it.attrs.get("ftype") in FILETYPES
    }
    if any(it.attrs.get("ftype") == "squashfs" for it in items.values()):
        items = {i: it for i, it in items.items() if it.attrs.get("ftype") != "root-image.gz"}
    files = tuple(
        WantedFile(
            filename=it.path.rsplit("/", 1)[-1],
            filetype=str(it.attrs["ftype"]),
            sha256=it.sha256,
            size=it.size,
            extra={k: it.attrs[k] for k in FILE_EXTRAS if k in it.attrs},
        )
        for it in items.values()
        if it.path and it.sha256 and it.size is not None
    )
    if not files or not _safe(spec) or len({f.filename for f in files}) != len(files):
        log.info("product_ignored", product=name, reason="no usable files or unsafe names")
        return None
    extra = {k: fields[k] for k in RESOURCE_EXTRAS if k in fields}
    extra |= {
        "subarches": fields.get("subarches") or spec.subarch,
        "title": product_title(fields),
        "label": spec.label,
    }
    return WantedSet(
        name=resource_name(spec),
        architecture=resource_architecture(spec),
        kflavor=spec.kflavor,
        bootloader_type=spec.bootloader_type,
        rolling=fields.get("rolling") == "True",
        extra=extra,
        version=version.name,
        label=spec.label,
        files=files,
    )


def choose_images(
    described: Iterable[SourceDescription], selections: Mapping[int, list[Selection]]
) -> list[Chosen]:
    """The sets to hold: each source's selected products plus every bootloader.

    Sources are taken in the order given; the first one offering a resource
    (name and architecture) wins it.
    """
    chosen: list[Chosen] = []
    claimed: set[ResourceKey] = set()
    for desc in described:
        sels = selections.get(desc.source.id) or [_MATCHES_NOTHING]
        for products in desc.products:
            picked = select_images(products, sels, include_bootloaders=True)
            for name in sorted(picked.products):
                ws = wanted_set(picked, name)
                if ws is None or ws.key in claimed:
                    continue
                claimed.add(ws.key)
                version = max(picked.products[name].versions.values(), key=lambda v: v.name)
                urls = {
                    it.sha256: join_url(desc.base_url, it.path)
                    for it in version.items.values()
                    if it.sha256 and it.path
                }
                chosen.append(
                    Chosen(
                        source_id=desc.source.id,
                        wanted=ws,
                        urls={f.sha256: urls[f.sha256] for f in ws.files},
                        items=_items_of(picked, name, ws),
                    )
                )
    return chosen


def _items_of(products: ProductList, name: str, ws: WantedSet) -> tuple[FlatItem, ...]:
    """The flattened items of product ``name`` that are the files of ``ws``."""
    files = {(f.filename, f.sha256) for f in ws.files}
    one = dataclasses.replace(products, products={name: products.products[name]})
    return tuple(
        item
        for item in flatten(one)
        if item.version_name == ws.version
        and item.path is not None
        and (item.path.rsplit("/", 1)[-1], item.sha256) in files
    )


def plan_blobs(chosen: Sequence[Chosen], held: Mapping[str, int]) -> DownloadPlan:
    """The blobs of every chosen set, one per sha256, split by what the store holds whole.

    ``held`` maps a sha256 to the bytes the store has of it (see
    ``region.images.downloads.held_bytes``); a blob is present when that is
    its size. Raises StreamFormatError, naming both items, when one sha256 is
    listed with two different sizes.
    """
    items = [item for c in chosen for item in c.items]
    sizes = {item.sha256: item.size for item in items}
    return plan_downloads(items, lambda sha256: held.get(sha256, -1) == sizes[sha256])


def resource_spec(resource: ResourceRow) -> ImageSpec:
    """The image spec a stored resource stands for (label from its newest import)."""
    os_name, _, release = resource.name.partition("/")
    arch, _, subarch = resource.architecture.partition("/")
    return ImageSpec(
        os=os_name,
        release=release,
        arch=arch,
        subarch=subarch,
        kflavor=resource.kflavor or "",
        label=str(resource.extra.get("label", "")),
        bootloader_type=resource.bootloader_type,
    )


@dataclass(frozen=True)
class Removals:
    """What the import removes, what it keeps although unoffered, and why it may refuse."""

    delete: tuple[ResourceRow, ...]
    kept: tuple[ResourceRow, ...]
    refused: bool  # the safety valve: this would leave no OS image at all


def plan_removals(
    existing: Iterable[ResourceRow],
    wanted: set[ResourceKey],
    held: set[ResourceKey],
    offered: set[tuple[str, str, str]],
    selections: Iterable[Selection],
) -> Removals:
    """Decide the fate of the synced resources this import does not hold.

    ``held`` are the resources with a complete set right now. An image stays
    when a selection still matches it and no source offers its os/arch/release
    any more (MAAS's "remains in selections"); bootloaders are never kept that
    way. The safety valve (``refused``) is set when the deletions would leave
    no complete OS image although there is one.
    """
    sels = tuple(selections)
    delete: list[ResourceRow] = []
    kept: list[ResourceRow] = []
    os_images: set[ResourceKey] = set()
    for resource in existing:
        if resource.bootloader_type is None:
            os_images.add(resource.key)
        if resource.key in wanted:
            continue
        spec = resource_spec(resource)
        still_selected = any(selection_matches(s, spec) for s in sels)
        unoffered = (spec.os, spec.arch, spec.release) not in offered
        if spec.bootloader_type is None and still_selected and unoffered:
            kept.append(resource)
        else:
            delete.append(resource)
    held_os = held & os_images
    left = held_os - {r.key for r in delete}
    return Removals(delete=tuple(delete), kept=tuple(kept), refused=bool(held_os) and not left)


def is_rollback(updated: str | None, last_imported: str | None) -> bool:
    """True when the index ``updated`` is older than the one imported before."""
    new, old = parse_updated(updated), parse_updated(last_imported)
    return new is not None and old is not None and new < old


@dataclass(frozen=True)
class DocumentRollback:
    """Why a products document is older than the one imported before."""

    message: str  # for the summary and the source's error
    fields: Mapping[str, str | None]  # for the rollback log event


def products_rollback(mark: ProductsMark, last: ImportedProducts | None) -> DocumentRollback | None:
    """A rollback when ``mark``'s document is older, or a product's newest version is, than ``last``.

    Dates compare as :func:`is_rollback` does; versions by name, as the newest
    version is chosen. None when nothing was imported from the document before.
    """
    if last is None:
        return None
    if is_rollback(mark.updated, last.updated):
        return DocumentRollback(
            f"the products document {mark.url}: updated {mark.updated}, older than "
            f"{last.updated} imported before",
            {"updated": mark.updated, "last_imported": last.updated},
        )
    for product, version in sorted(mark.newest.items()):
        before = last.versions.get(product)
        if before is not None and version < before:
            return DocumentRollback(
                f"the products document {mark.url}: the newest version of {product} is "
                f"{version}, older than {before} imported before",
                {
                    "updated": mark.updated,
                    "product": product,
                    "version": version,
                    "last_imported": before,
                },
            )
    return None
