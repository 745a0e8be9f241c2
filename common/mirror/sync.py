"""``bootsync mirror``: a verified, signed local mirror of a SimpleStreams source.

One run reads top to bottom: fetch and verify the index → fetch and verify each
products document → filter and keep the newest versions → plan the blobs
(de-duplicated by sha256) → download what the store lacks → link the files into
place → write our own signed metadata listing exactly what the mirror holds →
remove what is no longer listed → collect unreferenced blobs.

If any file fails, the run publishes nothing new: the previous metadata and
files stay as they were, the downloaded blobs stay in the store, and the next
run resumes from there.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from common.errors import BootsyncError
from common.mirror.tree import KEYRING_NAME, MirrorTree
from common.ops.logging import get_logger
from common.ops.progress import TransferProgress
from common.storage.blobstore import BlobStore
from common.transfer.download import Downloader, DownloadOutcome, DownloadRequest
from common.transfer.fetch import join_url
from common.transfer.http import make_session
from common.transfer.streams import (
    FetchedDocument,
    Stream,
    TrustPolicy,
    http_documents,
    read_stream,
    resolve_source,
)
from common.trust.keyrings import Keyring, SigningKey
from common.version import user_agent
from simplestreams import (
    Blob,
    FlatItem,
    Index,
    ItemFilter,
    ProductList,
    filter_items,
    flatten,
    newest_versions,
    plan_downloads,
    render_index,
    render_products,
)

log = get_logger("mirror")

USER_AGENT = user_agent("bootsync-mirror")


@dataclass(frozen=True)
class MirrorOptions:
    """What to mirror, from where, and how."""

    source_url: str
    target: Path
    keyring: Keyring | None  # None: the caller accepts an unsigned index.json
    signing_key: SigningKey
    filters: tuple[ItemFilter, ...] = ()
    max_versions: int = 1
    concurrency: int = 8
    show_progress: bool = True


@dataclass(frozen=True)
class MirrorSummary:
    """The outcome of one run, as logged in its ``mirror_finished`` event."""

    outcome: str  # "ok" or "failed"
    index_url: str
    products: int
    files_fetched: int
    files_reused: int
    files_failed: int
    bytes_fetched: int
    files_removed: int
    metadata_changed: bool
    duration_s: float
    failures: tuple[str, ...] = ()


class MirrorFailedError(BootsyncError):
    """Some files could not be fetched; nothing new was published."""

    def __init__(self, summary: MirrorSummary) -> None:
        self.summary = summary
        super().__init__(
            f"{summary.files_failed} file(s) failed; the mirror is unchanged: "
            + "; ".join(summary.failures[:5])
        )


async def run_mirror(opts: MirrorOptions) -> MirrorSummary:
    """Bring ``opts.target`` up to date with the source; raise MirrorFailedError on failures."""
    started = time.monotonic()
    source = resolve_source(opts.source_url, signed=opts.keyring is not None)
    index_url, base = source.index_url, source.base_url
    tree = MirrorTree(opts.target)
    log.info(
        "mirror_started",
        source=index_url,
        target=str(opts.target),
        filters=[str(f) for f in opts.filters],
        max_versions=opts.max_versions,
    )
    async with make_session(user_agent=USER_AGENT) as session:
        stream = await read_stream(
            http_documents(session, base), source.index_path, TrustPolicy(opts.keyring)
        )
        index = stream.index
        wanted = _select(stream, opts)
        items = [item for products in wanted.values() for item in flatten(products)]
        present = await _present(tree.store, items)
        plan = plan_downloads(items, present)
        await tree.store.ensure_space(plan.total_bytes)
        outcomes = await _download(session, tree.store, base, plan.to_fetch, opts)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        summary = _summary(
            "failed",
            index_url,
            wanted,
            outcomes,
            len(plan.already_present),
            removed=0,
            changed=False,
            started=started,
        )
        log.error("mirror_finished", **dataclasses.asdict(summary))
        raise MirrorFailedError(summary)
    files = {
        item.path: item.sha256
        for item in items
        if item.path is not None and item.sha256 is not None
    }
    await tree.place_files(files)
    changed = await _write_metadata(tree, index, wanted, opts.signing_key)
    published = dict(files) | dict.fromkeys(_metadata_paths(index, wanted), "metadata")
    removed = await tree.commit_state(published)
    await tree.store.collect_garbage(set(files.values()))
    summary = _summary(
        "ok",
        index_url,
        wanted,
        outcomes,
        len(plan.already_present),
        removed=len(removed),
        changed=changed,
        started=started,
    )
    log.info("mirror_finished", **dataclasses.asdict(summary))
    return summary


def _select(stream: Stream[FetchedDocument], opts: MirrorOptions) -> dict[str, ProductList]:
    """Each products document of the stream, filtered to the newest wanted versions."""
    wanted: dict[str, ProductList] = {}
    for content_id, products in stream.products.items():
        selected = filter_items(products, lambda item: _matches(opts.filters, item))
        kept = newest_versions(selected, keep=opts.max_versions)
        log.info(
            "products_selected",
            content_id=content_id,
            products=len(kept.products),
            upstream=len(products.products),
        )
        if kept.products:  # a document the filters emptied is not published at all
            wanted[content_id] = kept
    return wanted


def _matches(filters: tuple[ItemFilter, ...], item: FlatItem) -> bool:
    return item.path is not None and all(f.matches(item.fields) for f in filters)


async def _present(store: BlobStore, items: list[FlatItem]) -> set[str]:
    sizes = {
        item.sha256: item.size
        for item in items
        if item.sha256 is not None and item.size is not None
    }
    return {sha for sha, size in sizes.items() if await store.has(sha, size)}


async def _download(
    session: aiohttp.ClientSession,
    store: BlobStore,
    base: str,
    blobs: tuple[Blob, ...],
    opts: MirrorOptions,
) -> list[DownloadOutcome]:
    requests = [
        DownloadRequest(
            url=join_url(base, b.paths[0]), sha256=b.sha256, size=b.size, name=b.paths[0]
        )
        for b in blobs
    ]
    progress = (
        TransferProgress(
            total_bytes=sum(r.size for r in requests), total_files=len(requests), label="mirror"
        )
        if opts.show_progress
        else None
    )
    downloader = Downloader(session, store, on_progress=_advance(progress))
    try:
        return await downloader.fetch_all(requests, concurrency=opts.concurrency)
    finally:
        if progress is not None:
            progress.close()


def _advance(progress: TransferProgress | None):  # type: ignore[no-untyped-def]
    if progress is None:
        return None

    def on_progress(_req: DownloadRequest, nbytes: int) -> None:
        progress.advance(nbytes)

    return on_progress


def _stem(path: str) -> str:
    return re.sub(r"\.s?json$", "", path)


def _metadata_paths(index: Index, wanted: Mapping[str, ProductList]) -> list[str]:
    paths = ["streams/v1/index.json", "streams/v1/index.sjson", KEYRING_NAME]
    for content_id in wanted:
        stem = _stem(index.entries[content_id].path or "")
        paths += [f"{stem}.json", f"{stem}.sjson"]
    return paths


async def _write_metadata(
    tree: MirrorTree, index: Index, wanted: Mapping[str, ProductList], key: SigningKey
) -> bool:
    """Write signed products documents, then the index; True if anything changed."""
    # A new key (or keyring) means every signature must be made again.
    resign = await tree.write_document(KEYRING_NAME, await key.aexport_public())
    changed = resign
    entries = {}
    for content_id, products in wanted.items():
        entry = index.entries[content_id]
        stem = _stem(entry.path or "")
        changed |= await _write_signed(tree, stem, render_products(products), key, resign)
        entries[content_id] = dataclasses.replace(
            entry, path=f"{stem}.json", products=tuple(sorted(products.products))
        )
    plain = dataclasses.replace(index, entries=entries)
    signed = dataclasses.replace(
        index,
        entries={
            cid: dataclasses.replace(e, path=f"{_stem(e.path or '')}.sjson")
            for cid, e in entries.items()
        },
    )
    changed |= await tree.write_document("streams/v1/index.json", render_index(plain))
    if changed or await tree.read_document("streams/v1/index.sjson") is None:
        await tree.write_document(
            "streams/v1/index.sjson", await key.aclearsign(render_index(signed))
        )
    return changed


async def _write_signed(
    tree: MirrorTree, stem: str, payload: bytes, key: SigningKey, resign: bool
) -> bool:
    """Write ``stem.json`` and its clearsigned ``stem.sjson`` (signed again only on change)."""
    changed = await tree.write_document(f"{stem}.json", payload)
    if changed or resign or await tree.read_document(f"{stem}.sjson") is None:
        await tree.write_document(f"{stem}.sjson", await key.aclearsign(payload))
    return changed


def _summary(
    outcome: str,
    index_url: str,
    wanted: Mapping[str, ProductList],
    outcomes: list[DownloadOutcome],
    reused: int,
    *,
    removed: int,
    changed: bool,
    started: float,
) -> MirrorSummary:
    fetched = [o for o in outcomes if o.ok and not o.reused]
    failed = [o for o in outcomes if not o.ok]
    return MirrorSummary(
        outcome=outcome,
        index_url=index_url,
        products=sum(len(p.products) for p in wanted.values()),
        files_fetched=len(fetched),
        files_reused=reused + sum(1 for o in outcomes if o.ok and o.reused),
        files_failed=len(failed),
        bytes_fetched=sum(o.bytes_received for o in outcomes),
        files_removed=removed,
        metadata_changed=changed,
        duration_s=round(time.monotonic() - started, 3),
        failures=tuple(f"{o.request.name}: {o.error}" for o in failed),
    )
