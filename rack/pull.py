"""One rack pull: the region's signed stream → verified files → a new snapshot.

:func:`run_pull` reads as the list of its steps: ask for the index (a 304 ends
the pull), verify it and the products documents with the pinned region key,
lay the newest versions out as MAAS racks do, plan against the local cache,
stream what is missing (bounded, sha256-checked, resumable), build the snapshot
(bootloader archives unpacked and their boot files linked at its root:
rack/bootloaders.py), publish it by switching ``current``, then drop other snapshots and cache files
nothing links. Any failure leaves ``current`` as it was; partial downloads stay
for the next attempt. Each pull logs its steps and one ``pull_finished``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import structlog

from common.errors import BootsyncError, ConnectError, HTTPStatusError, is_retryable
from common.ops.logging import get_logger
from common.storage.blobstore import BlobStore
from common.storage.snapshot import PublishedSnapshot, SnapshotPublisher
from common.transfer.download import Downloader, DownloadOutcome, DownloadRequest
from common.transfer.streams import SIGNED_INDEX_PATH, TrustPolicy, read_stream
from rack.bootloaders import install_bootloaders
from rack.identity import PinnedRegion, RackIdentity
from rack.layout import META_NAME, RackLayout, plan_layout
from rack.link import RegionHealth
from rack.region_client import RegionClient, StreamDocument
from rack.status import StatusBoard, SyncRecord, utc_now
from simplestreams import DownloadPlan, ProductList, StreamFormatError, plan_downloads

log = get_logger("rack.pull")

Outcome = Literal["ok", "unchanged", "failed", "cancelled"]
KEEP_SNAPSHOTS = 1


@dataclass
class PullContext:
    """What a pull works with; one pull at a time per context."""

    client: RegionClient
    identity: RackIdentity
    status: StatusBoard
    health: RegionHealth
    store: BlobStore
    publisher: SnapshotPublisher
    downloader: Downloader
    concurrency: int = 8


@dataclass
class PullResult:
    """The summary of one pull (also logged as ``pull_finished``)."""

    outcome: Outcome = "failed"
    files_fetched: int = 0
    files_reused: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    snapshot_id: str | None = None  # the rack snapshot ``current`` points at afterwards
    region_snapshot: str | None = None
    error: str | None = None
    retry_soon: bool = False  # a failure another attempt may fix shortly


async def run_pull(
    ctx: PullContext,
    *,
    reason: str = "manual",
    force: bool = False,
) -> PullResult:
    """Pull once; never raises except CancelledError (the result says what happened).

    ``force`` reads the index even if it did not change (an operator's import):
    the metadata is fetched and verified again, files still only when missing.
    """
    result = PullResult()
    started = time.monotonic()
    with structlog.contextvars.bound_contextvars(pull_id=secrets.token_hex(4)):
        log.info("pull_started", reason=reason, force=force, region=ctx.client.base_url)
        try:
            await _pull(ctx, result, force=force)
        except asyncio.CancelledError:
            result.outcome, result.error = "cancelled", "the rack is stopping"
            raise
        except (BootsyncError, StreamFormatError, OSError) as exc:
            _failed(ctx, result, exc)
        finally:
            result.duration_s = round(time.monotonic() - started, 3)
            if result.snapshot_id is None:
                result.snapshot_id = await ctx.publisher.current_id()
            log.info(
                "pull_finished",
                outcome=result.outcome,
                reason=reason,
                files_fetched=result.files_fetched,
                files_reused=result.files_reused,
                bytes=result.bytes,
                duration_s=result.duration_s,
                snapshot_id=result.snapshot_id,
                region_snapshot=result.region_snapshot,
                error=result.error,
            )
    return result


async def _pull(ctx: PullContext, result: PullResult, *, force: bool) -> None:
    pinned = ctx.identity.require_pinned()
    index_doc = await ctx.client.get_index(None if force else ctx.status.index_etag)
    ctx.health.ok(url=ctx.client.base_url)
    if index_doc is None:
        log.info("index_not_modified", etag=ctx.status.index_etag)
        ctx.status.unchanged()
        result.outcome = "unchanged"
        result.region_snapshot = ctx.status.status.snapshot_id
        return
    ctx.status.syncing()
    products, region_snapshot = await _verified_products(ctx, index_doc, pinned)
    result.region_snapshot = region_snapshot
    layout = plan_layout(products)
    for skipped in layout.skipped:
        log.warning("layout_item_skipped", location=skipped.location, reason=skipped.reason)
    for left_out in layout.left_out:
        log.warning(
            "layout_version_skipped",
            content_id=left_out.content_id,
            product=left_out.product,
            version=left_out.version,
            items=left_out.items,
            reason=left_out.reason,
        )
    plan = await _plan(ctx.store, layout)
    if plan.to_fetch:
        await ctx.store.ensure_space(plan.total_bytes)
    outcomes = await ctx.downloader.fetch_all(_requests(ctx.client, plan), ctx.concurrency)
    _count(result, plan, outcomes)
    _raise_first_failure(outcomes)
    published = await _publish(ctx.publisher, layout)
    await _clean_up(ctx.publisher, ctx.store)
    await ctx.status.succeeded(
        SyncRecord(
            index_etag=index_doc.etag,
            region_snapshot=region_snapshot,
            rack_snapshot=published.id,
            last_sync=utc_now(),
        ),
        layout.images,
    )
    result.outcome = "ok" if published.changed else "unchanged"
    result.snapshot_id = published.id


async def _verified_products(
    ctx: PullContext, index_doc: StreamDocument, pinned: PinnedRegion
) -> tuple[list[ProductList], str | None]:
    """The products documents the verified index lists, each verified with the pinned key."""

    async def get(path: str) -> StreamDocument:
        # The index came with the conditional GET that told us it changed.
        return index_doc if path == SIGNED_INDEX_PATH else await ctx.client.get_document(path)

    stream = await read_stream(
        get, SIGNED_INDEX_PATH, TrustPolicy(pinned.keyring, fingerprint=pinned.fingerprint)
    )
    log.info(
        "index_verified",
        entries=len(stream.index.entries),
        etag=index_doc.etag,
        region_snapshot=index_doc.snapshot,
        fingerprint=stream.signer,
    )
    snapshot = index_doc.snapshot
    for doc in stream.documents.values():
        snapshot = doc.snapshot or snapshot
    log.info("products_verified", documents=len(stream.products), region_snapshot=snapshot)
    return list(stream.products.values()), snapshot


async def _plan(store: BlobStore, layout: RackLayout) -> DownloadPlan:
    present: set[str] = set()
    for item in layout.sources:
        if (
            item.sha256
            and item.size is not None
            and item.sha256 not in present
            and await store.has(item.sha256, item.size)
        ):
            present.add(item.sha256)
    plan = plan_downloads(layout.sources, present)
    log.info(
        "pull_planned",
        files=len(plan.to_fetch),
        reused=len(plan.already_present),
        bytes=plan.total_bytes,
        reused_bytes=plan.present_bytes,
        snapshot_files=len(layout.files),
    )
    return plan


def _requests(client: RegionClient, plan: DownloadPlan) -> list[DownloadRequest]:
    return [
        DownloadRequest(
            url=client.stream_url(blob.paths[0]),
            sha256=blob.sha256,
            size=blob.size,
            name=blob.paths[0],
        )
        for blob in plan.to_fetch
    ]


def _count(result: PullResult, plan: DownloadPlan, outcomes: list[DownloadOutcome]) -> None:
    result.files_fetched = sum(1 for o in outcomes if o.ok and not o.reused)
    result.files_reused = len(plan.already_present) + sum(1 for o in outcomes if o.reused)
    result.bytes = sum(o.bytes_received for o in outcomes)


def _raise_first_failure(outcomes: list[DownloadOutcome]) -> None:
    failed = [o for o in outcomes if not o.ok]
    if failed:
        log.error("downloads_failed", files=len(failed), error=str(failed[0].error))
        assert failed[0].error is not None
        raise failed[0].error


async def _publish(publisher: SnapshotPublisher, layout: RackLayout) -> PublishedSnapshot:
    async with publisher.build() as builder:
        for rack_file in layout.files:
            await builder.link_blob(rack_file.sha256, rack_file.relpath)
        await install_bootloaders(builder, [f.relpath for f in layout.files])
        await builder.write_file(META_NAME, layout.meta_json())
    assert builder.result is not None
    return builder.result


async def _clean_up(publisher: SnapshotPublisher, store: BlobStore) -> None:
    """Drop other snapshots, then cache files no snapshot links (failures only logged)."""
    try:
        await publisher.prune(KEEP_SNAPSHOTS)
        await store.collect_garbage(await publisher.referenced_blobs())
    except OSError as exc:
        log.warning("cleanup_failed", error=str(exc))


def _failed(ctx: PullContext, result: PullResult, exc: BaseException) -> None:
    """Record a failed pull: the status, the summary, and whether to retry soon."""
    result.outcome, result.error = "failed", str(exc)
    ctx.status.failed(str(exc))
    if isinstance(exc, ConnectError):
        # Logged once as region_unreachable; the link reconnects with backoff and
        # asks for a sync as soon as the region is back.
        ctx.health.failed(exc, url=exc.url or ctx.client.base_url)
        return
    reason = getattr(exc, "reason", None) or type(exc).__name__
    if is_retryable(exc):
        log.warning("pull_failed", error=str(exc), reason=reason)
    else:
        log.error("pull_refused", error=str(exc), reason=reason)
    # A 404 mid-pull: the region published a newer stream meanwhile.
    gone = isinstance(exc, HTTPStatusError) and exc.status == 404
    result.retry_soon = is_retryable(exc) or gone
