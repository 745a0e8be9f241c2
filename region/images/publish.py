"""The region's own SimpleStreams stream: exactly the complete sets it holds, signed.

Published as an immutable snapshot (``common.storage.snapshot``) under
``<data_dir>/stream``; the daemon serves ``current/`` at ``/MAAS/images-stream/``::

    streams/v1/index.json, index.sjson            index:1.0 (the .sjson lists .sjson paths)
    streams/v1/com.bootsync.region:v1:download.json, .sjson
    region-keyring.gpg                            the region's public key (binary)
    <os>/<arch>/<subarch>/<series>/<version>/<filename>   hard links to blobs

Naming: one content id, ``com.bootsync.region:v1:download`` (reverse-domain as
the format asks, not MAAS's legacy unsigned ``maas:v2:download``: this stream is
signed and its consumers are our racks and sstream-mirror). Products and paths
are MAAS's legacy ones: ``maas:boot:<os>:<arch>:<subarch>:<series>``, one
version per complete set, items keyed by file name. ``updated`` changes only
when the content does, so an unchanged import publishes nothing and racks'
conditional requests keep answering 304.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from common.ops.logging import get_logger
from common.storage.blobstore import BlobStore
from common.storage.snapshot import PublishedSnapshot, SnapshotPublisher
from common.trust.keyrings import SigningKey
from region.db import resources as repo_resources
from region.db.connection import Database
from region.db.resources import ResourceRow, SetRow
from simplestreams import (
    PRODUCTS_FORMAT,
    Index,
    IndexEntry,
    Item,
    Product,
    ProductList,
    Version,
    parse_products,
    render_index,
    render_products,
    served_path_problem,
    served_segment_problem,
)

log = get_logger("stream")

# The region's public signing key, published beside the stream it signs.
KEYRING_NAME = "region-keyring.gpg"

CONTENT_ID = "com.bootsync.region:v1:download"
DATATYPE = "image-downloads"
PRODUCTS_PATH = f"streams/v1/{CONTENT_ID}.json"
SIGNED_PRODUCTS_PATH = f"streams/v1/{CONTENT_ID}.sjson"
INDEX_PATH = "streams/v1/index.json"
SIGNED_INDEX_PATH = "streams/v1/index.sjson"
KEEP_SNAPSHOTS = 2

# Resource extra keys copied onto the product (the rest stay region-side).
_PRODUCT_EXTRAS = (
    "subarches",
    "title",
    "support_eol",
    "release_title",
    "release_codename",
    "platform",
    "supported_platforms",
)
_RESERVED_ITEM_KEYS = frozenset({"path", "sha256", "size", "ftype"})


def _segment_ok(value: str) -> bool:
    # The served-name rule the import screens with and the racks lay out by: a set
    # held from before that rule (a 300-byte file name) is skipped, never linked.
    return served_segment_problem(value) is None


def product_name(resource: ResourceRow) -> tuple[str, dict[str, Any]] | None:
    """(product name, product attrs) of a resource; None if it cannot be a safe path."""
    os_name, _, series = resource.name.partition("/")
    if not series:  # an uploaded image with a bare name
        os_name, series = "custom", resource.name
    arch, _, subarch = resource.architecture.partition("/")
    if not all(_segment_ok(v) for v in (os_name, series, arch, subarch)):
        return None
    attrs: dict[str, Any] = {
        "os": os_name,
        "arch": arch,
        "subarch": subarch,
        "release": series,
        "version": series,
    }
    attrs.update({k: resource.extra[k] for k in _PRODUCT_EXTRAS if k in resource.extra})
    if resource.kflavor:
        attrs["kflavor"] = resource.kflavor
    if resource.bootloader_type:
        attrs["bootloader-type"] = resource.bootloader_type
    if resource.rolling:
        attrs["rolling"] = True
    return f"maas:boot:{os_name}:{arch}:{subarch}:{series}", attrs


def stream_products(
    held: list[tuple[ResourceRow, list[SetRow]]],
) -> tuple[dict[str, Product], dict[str, str]]:
    """Products for the complete ``held`` sets, and the blob at each file path."""
    products: dict[str, Product] = {}
    blobs: dict[str, str] = {}
    for resource, sets in held:
        named = product_name(resource)
        if named is None:
            log.warning(
                "stream_entry_skipped",
                name=resource.name,
                architecture=resource.architecture,
                reason="unsafe path",
            )
            continue
        name, attrs = named
        prefix = f"{attrs['os']}/{attrs['arch']}/{attrs['subarch']}/{attrs['release']}"
        versions: dict[str, Version] = {}
        for set_row in sets:
            paths = {f.filename: f"{prefix}/{set_row.version}/{f.filename}" for f in set_row.files}
            problem = next(
                (
                    p
                    for p in (
                        served_segment_problem(set_row.version),
                        *(served_path_problem(path) for path in paths.values()),
                    )
                    if p is not None
                ),
                None,
            )
            if problem is not None:  # a set goes out whole or not at all
                log.warning(
                    "stream_entry_skipped",
                    name=resource.name,
                    architecture=resource.architecture,
                    version=set_row.version,
                    reason=problem,
                )
                continue
            items: dict[str, Item] = {}
            for f in set_row.files:
                path = paths[f.filename]
                extra = {k: v for k, v in f.extra.items() if k not in _RESERVED_ITEM_KEYS}
                items[f.filename] = Item(
                    name=f.filename,
                    path=path,
                    sha256=f.sha256,
                    size=f.size,
                    attrs={"ftype": f.filetype, **extra},
                )
                blobs[path] = f.sha256
            if items:
                versions[set_row.version] = Version(name=set_row.version, items=items)
        if versions:
            attrs["label"] = sets[-1].label  # the newest complete set's
            products[name] = Product(name=name, attrs=attrs, versions=versions)
    return products, blobs


def _documents(products: dict[str, Product], updated: str) -> tuple[bytes, bytes, bytes]:
    """(products JSON, index JSON, index JSON listing the signed paths)."""
    payload = render_products(
        ProductList(content_id=CONTENT_ID, datatype=DATATYPE, updated=updated, products=products)
    )
    entry = IndexEntry(
        content_id=CONTENT_ID,
        path=PRODUCTS_PATH,
        format=PRODUCTS_FORMAT,
        datatype=DATATYPE,
        updated=updated,
        products=tuple(sorted(products)),
    )
    signed_entry = dataclasses.replace(entry, path=SIGNED_PRODUCTS_PATH)
    return (
        payload,
        render_index(Index(updated=updated, entries={CONTENT_ID: entry})),
        render_index(Index(updated=updated, entries={CONTENT_ID: signed_entry})),
    )


def _read_current(current: Path) -> tuple[bytes, bytes] | None:
    """(products JSON, keyring) of the current snapshot, if it is complete."""
    try:
        if not (current / SIGNED_INDEX_PATH).is_file():
            return None
        return (current / PRODUCTS_PATH).read_bytes(), (current / KEYRING_NAME).read_bytes()
    except OSError:
        return None


async def _unchanged(
    publisher: SnapshotPublisher, products: dict[str, Product], keyring: bytes
) -> bool:
    current = await asyncio.to_thread(_read_current, publisher.current_link)
    if current is None or current[1] != keyring:
        return False
    previous = parse_products(current[0], source=PRODUCTS_PATH).updated or ""
    return _documents(products, previous)[0] == current[0]


async def held_sets(
    store: BlobStore, complete: list[tuple[ResourceRow, list[SetRow]]]
) -> list[tuple[ResourceRow, list[SetRow]]]:
    """The sets of ``complete`` whose every blob ``store`` holds (the others are skipped).

    In a cluster a set completed by another region's import is complete in the
    database before this region's store holds it (region/cluster/peers.py fetches
    it); with one region every complete set is held.
    """
    sizes = {f.sha256: f.size for _, sets in complete for s in sets for f in s.files}
    held = await store.held_bytes(sizes)
    kept: list[tuple[ResourceRow, list[SetRow]]] = []
    skipped: list[str] = []
    for resource, sets in complete:
        ok = [s for s in sets if all(held.get(f.sha256) == f.size for f in s.files)]
        if len(ok) < len(sets):
            ok_ids = {s.id for s in ok}
            skipped += [
                f"{resource.name} {resource.architecture} {s.version}"
                for s in sets
                if s.id not in ok_ids
            ]
        if ok:
            kept.append((resource, ok))
    if skipped:
        log.info("stream_sets_not_held", sets=len(skipped), skipped=skipped[:20])
    return kept


async def publish_stream(
    db: Database,
    publisher: SnapshotPublisher,
    key: SigningKey,
    *,
    keep: int = KEEP_SNAPSHOTS,
) -> PublishedSnapshot | None:
    """Publish what the region holds; None when the current stream already says so.

    One caller at a time (the importer's lock). Old snapshots beyond ``keep``
    are pruned. Raises KeyringError if signing fails; the previous stream then
    stays current.
    """
    products, blobs = stream_products(
        await held_sets(publisher.store, await repo_resources.complete_sets(db))
    )
    keyring = await key.aexport_public()
    if await _unchanged(publisher, products, keyring):
        log.info("stream_unchanged", products=len(products))
        return None
    updated = format_datetime(datetime.now(UTC).replace(microsecond=0))
    payload, index, signed_index = _documents(products, updated)
    async with publisher.build() as builder:
        for path, sha256 in sorted(blobs.items()):
            await builder.link_blob(sha256, path)
        await builder.write_file(PRODUCTS_PATH, payload)
        await builder.write_file(SIGNED_PRODUCTS_PATH, await key.aclearsign(payload))
        await builder.write_file(INDEX_PATH, index)
        await builder.write_file(SIGNED_INDEX_PATH, await key.aclearsign(signed_index))
        await builder.write_file(KEYRING_NAME, keyring)
    await publisher.prune(keep)
    log.info(
        "stream_published",
        products=len(products),
        files=len(blobs),
        updated=updated,
        snapshot_id=builder.result.id if builder.result else None,
    )
    return builder.result
