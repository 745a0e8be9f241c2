"""``bootsync mirror``: a verified, signed local mirror of a SimpleStreams source.

One run reads top to bottom: fetch and verify the index → fetch and verify each
products document → filter and keep the newest versions → add what earlier runs
selected (:mod:`common.mirror.selection`; not with ``delete``) → refuse what no
server could serve from the mirror (:mod:`common.mirror.screening`) → plan the blobs
(de-duplicated by sha256) → download what the store lacks → link the files into
place → write our own signed metadata listing exactly what the mirror holds (or,
with ``keep_upstream_metadata``, the upstream's signed documents unchanged) →
remove what is no longer listed → collect unreferenced blobs.
:func:`plan_mirror` is the same run up to the plan, writing nothing (``--dry-run``).

If any file fails, the run publishes nothing new: the previous metadata and
files stay as they were, the downloaded blobs stay in the store, and the next
run resumes from there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from common.errors import BootsyncError
from common.mirror.http_cache import MirrorDocumentCache
from common.mirror.screening import screen_selection
from common.mirror.selection import MirrorSelection, accumulate
from common.mirror.tree import KEYRING_NAME, MirrorTree
from common.mirror.upstream_metadata import upstream_documents, write_upstream_metadata
from common.ops.logging import get_logger
from common.ops.progress import TransferProgress
from common.storage.blobstore import BlobStore
from common.transfer.download import Downloader, DownloadOutcome, DownloadRequest
from common.transfer.fetch import join_url
from common.transfer.http import make_session
from common.transfer.limits import TransferLimits
from common.transfer.streams import (
    FetchedDocument,
    Stream,
    StreamSource,
    TrustPolicy,
    http_documents,
    keep_verified,
    read_stream,
    resolve_source,
)
from common.trust.keyrings import Keyring, SigningKey
from common.version import user_agent
from simplestreams import (
    Blob,
    DownloadPlan,
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
from simplestreams.screen import DEFAULT_MAX_ITEM_SIZE, Refusal

log = get_logger("mirror")

USER_AGENT = user_agent("bootsync-mirror")


@dataclass(frozen=True)
class MirrorOptions:
    """What to mirror, from where, and how."""

    source_url: str
    target: Path
    keyring: Keyring | None  # None: the caller accepts an unsigned index.json
    signing_key: SigningKey | None  # None only with keep_upstream_metadata, or to plan
    filters: tuple[ItemFilter, ...] = ()
    max_versions: int = 1
    concurrency: int = 8
    show_progress: bool = True
    delete: bool = False  # True: drop what earlier runs selected and no current filter does
    keep_upstream_metadata: bool = False  # publish the upstream's signed documents as they are
    transfer: TransferLimits = dataclasses.field(default_factory=TransferLimits)  # minimum rate
    max_item_size: int = DEFAULT_MAX_ITEM_SIZE  # an item claiming more is refused


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
    refused: tuple[str, ...] = ()  # items (their versions) and documents not mirrored, and why


@dataclass(frozen=True)
class MirrorPlan:
    """What a run would do (``--dry-run``): nothing of it has been done."""

    index_url: str
    products: int
    to_fetch: tuple[tuple[str, int], ...]  # (path, size) of each blob the store lacks
    files_held: int  # blobs the store already holds
    to_remove: tuple[str, ...]  # published files the run would delete

    @property
    def bytes_to_fetch(self) -> int:
        """Bytes the run would download."""
        return sum(size for _, size in self.to_fetch)


@dataclass(frozen=True)
class _Work:
    """One run's decisions, made before anything is written."""

    index: Index  # the upstream's index, with the entries of the selection
    selection: MirrorSelection  # what the mirror will hold
    files: dict[str, str]  # item path -> sha256
    plan: DownloadPlan
    published: dict[str, str]  # every published path -> sha256 or "metadata"
    documents: dict[str, bytes]  # the upstream's own metadata (keep_upstream_metadata)
    refused: tuple[Refusal, ...] = ()  # what the mirror could not read or hold


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
    if opts.signing_key is None and not opts.keep_upstream_metadata:
        raise ValueError("a mirror with its own metadata needs a signing key")
    source = resolve_source(opts.source_url, signed=opts.keyring is not None)
    index_url, base = source.index_url, source.base_url
    tree = MirrorTree(opts.target)
    log.info(
        "mirror_started",
        source=index_url,
        target=str(opts.target),
        filters=[str(f) for f in opts.filters],
        max_versions=opts.max_versions,
        delete=opts.delete,
        keep_upstream_metadata=opts.keep_upstream_metadata,
    )
    async with make_session(user_agent=USER_AGENT) as session:
        work = await _prepare(session, source, tree, opts)
        plan, wanted = work.plan, work.selection.products
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
            refused=work.refused,
        )
        log.error("mirror_finished", **dataclasses.asdict(summary))
        raise MirrorFailedError(summary)
    await tree.place_files(work.files)
    if opts.keep_upstream_metadata or opts.signing_key is None:
        changed = await write_upstream_metadata(tree, work.documents)
    else:
        changed = await _write_metadata(tree, work.index, wanted, opts.signing_key)
    removed = await tree.commit_state(work.published, work.selection)
    await tree.store.collect_garbage(set(work.files.values()))
    summary = _summary(
        "ok",
        index_url,
        wanted,
        outcomes,
        len(plan.already_present),
        removed=len(removed),
        changed=changed,
        started=started,
        refused=work.refused,
    )
    log.info("mirror_finished", **dataclasses.asdict(summary))
    return summary


async def plan_mirror(opts: MirrorOptions) -> MirrorPlan:
    """What :func:`run_mirror` would fetch and remove; reads the source, writes nothing."""
    source = resolve_source(opts.source_url, signed=opts.keyring is not None)
    tree = MirrorTree(opts.target)
    async with make_session(user_agent=USER_AGENT) as session:
        work = await _prepare(session, source, tree, opts, dry_run=True)
    return MirrorPlan(
        index_url=source.index_url,
        products=sum(len(p.products) for p in work.selection.products.values()),
        to_fetch=tuple((blob.paths[0], blob.size) for blob in work.plan.to_fetch),
        files_held=len(work.plan.already_present),
        to_remove=tuple(await tree.stale_files(work.published)),
    )


async def _prepare(
    session: aiohttp.ClientSession,
    source: StreamSource,
    tree: MirrorTree,
    opts: MirrorOptions,
    *,
    dry_run: bool = False,
) -> _Work:
    """Read the source and decide what the mirror will hold, fetch and publish.

    Metadata is asked for conditionally: what the upstream served last time is
    kept in the mirror's state (a dry run reads it but writes nothing).
    """
    cache = MirrorDocumentCache(tree.state_dir, read_only=dry_run)
    stream = await read_stream(
        http_documents(session, source.base_url, limits=opts.transfer, cache=cache),
        source.index_path,
        TrustPolicy(opts.keyring),
        on_verified=keep_verified(cache),
        lenient=True,
    )
    wanted = _select(stream, opts)
    current = MirrorSelection(
        entries={cid: stream.index.entries[cid] for cid in wanted}, products=wanted
    )
    selection = (
        current
        if opts.delete
        else accumulate(
            await tree.previous_selection(), current, stream.products, keep=opts.max_versions
        )
    )
    selection, refused = screen_selection(
        selection,
        index_url=stream.index_document.url,
        documents={cid: document.url for cid, document in stream.documents.items()},
        max_item_size=opts.max_item_size,
        read_refusals=stream.refusals,
    )
    items = [item for products in selection.products.values() for item in flatten(products)]
    plan = plan_downloads(items, await _present(tree.store, items))
    files = {
        item.path: item.sha256
        for item in items
        if item.path is not None and item.sha256 is not None
    }
    index = dataclasses.replace(stream.index, entries=selection.entries)
    if opts.keep_upstream_metadata:
        documents = upstream_documents(stream, source.index_path, files)
        metadata = list(documents)
    else:
        documents = {}
        metadata = _metadata_paths(index, selection.products)
    return _Work(
        index=index,
        selection=selection,
        files=files,
        plan=plan,
        published=dict(files) | dict.fromkeys(metadata, "metadata"),
        documents=documents,
        refused=refused,
    )


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
    downloader = Downloader(session, store, on_progress=_advance(progress), limits=opts.transfer)
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
    entries = {}
    writes = []
    for content_id, products in wanted.items():
        entry = index.entries[content_id]
        stem = _stem(entry.path or "")
        writes.append(_write_signed(tree, stem, render_products(products), key, resign))
        entries[content_id] = dataclasses.replace(
            entry, path=f"{stem}.json", products=tuple(sorted(products.products))
        )
    # Signed at once: each signature is a gpg process of its own (the agent serves them all).
    try:
        async with asyncio.TaskGroup() as group:
            signing = [group.create_task(write) for write in writes]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None  # an OSError stays one (the CLI reports it)
    changed = resign or any(task.result() for task in signing)
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
    refused: tuple[Refusal, ...] = (),
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
        refused=tuple(str(r) for r in refused),
    )
