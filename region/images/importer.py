"""The region import, MAAS's import pipeline as one orchestrator that reads top to bottom.

:meth:`Importer.run_import` runs these steps, each logged as an event:

1. ensure a source: the default source and selection when none exists;
2. read every source: fetch and verify the signed index and products, refresh
   the catalogue (per-source errors are kept, the other sources go on);
3. rollback guard: refuse an index older than the last one imported from the
   same URL, unless forced;
4. select: the user's selections plus every bootloader, newest version of
   each product; of two sources offering an image the one with the higher
   priority wins it, a disabled source is not read at all; plan the blobs
   with ``simplestreams.plan_downloads`` (one sha256 listed with two sizes
   refuses the import);
5. write the metadata (resources, sets, files) before downloading, so the API
   shows what is queued;
6. download the missing blobs into the store (``bytes_done`` as they arrive);
   a failed file leaves its set incomplete, the previous set stays;
7. removals: keep images a selection still names that vanished upstream,
   delete unselected ones, unless that would delete every image (safety valve);
8. set cleaner: the newest complete set of each image stays; the default and
   commissioning releases, if never set, become the newest LTS held (as MAAS);
9. publish the region's stream; 10. collect unreferenced blobs;
11. run once more if sources or selections changed meanwhile.

Each run ends with one ``import_finished`` event, also stored in ``import_runs``.

In a cluster (``lease`` given) one import runs at a time in the whole cluster:
a run first takes the ``'import'`` lease (region/cluster/lease.py), renews it
every heartbeat while it runs and releases it at the end; a region whose lease
is lost (taken over after it expired, or not renewed while the database was
unreachable) cancels its import as a stop does, except that it leaves the
database's sets to the region that took over. :meth:`Importer.start_watching`
runs the watcher that keeps the lease's state for :meth:`Importer.is_importing`
and takes over the unfinished import of a region that died. Each
:meth:`Importer.run_import` ends by telling the cluster (``events``) that an
import finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import defaultdict
from typing import Protocol

import aiohttp

from common.errors import InsufficientSpaceError, error_text
from common.ops.logging import get_logger
from common.storage.blobstore import BlobStore
from common.storage.snapshot import SnapshotPublisher
from common.transfer.download import DownloadOutcome, DownloadRequest
from common.trust.keyrings import SigningKey
from region.cluster.lease import ImportLease
from region.db import catalogue as repo_catalogue
from region.db import imported_products as repo_imported
from region.db import imports as repo_import
from region.db import resources as repo_resources
from region.db import sources as repo_sources
from region.db.connection import Database
from region.db.sources import DuplicateError
from region.images.catalogue import Catalogue, SourceDescription, error_message
from region.images.downloads import fetch_blobs, held_bytes
from region.images.os_releases import set_default_releases
from region.images.proxy import UpstreamSessions
from region.images.publish import publish_stream
from region.images.space import NO_SPACE, is_disk_full
from region.images.steps import (
    Chosen,
    ImportSettings,
    ImportSummary,
    Tally,
    choose_images,
    default_arches,
    is_rollback,
    plan_blobs,
    plan_removals,
    products_rollback,
)
from simplestreams import DownloadPlan, Selection, StreamFormatError

log = get_logger("importer")

DATABASE_UNREACHABLE = "database_unreachable"
FULL_BELOW = 1 << 20
"""Free bytes under which the store's filesystem counts as full (see ``_out_of_space``)."""

__all__ = ["EventBus", "ImportSettings", "ImportSummary", "Importer"]

TAKEOVER = "takeover"
"""The reason of an import a region runs for a region that died in the middle of it."""


class EventBus(Protocol):
    """Where the end of each import is announced (region/cluster/events.py's ClusterEvents)."""

    async def publish(self, kind: str, **fields: str | int | bool | None) -> None:
        """Deliver ``kind`` with ``fields`` to every region of the cluster."""


class Importer:
    """Runs region imports, one at a time; implements ``ImportControl``.

    ``store`` is ``<data_dir>/store``, ``publisher`` publishes ``<data_dir>/stream``
    (both shared with the web app), ``catalogue`` reads the sources.
    """

    def __init__(
        self,
        db: Database,
        session: aiohttp.ClientSession,
        *,
        store: BlobStore,
        publisher: SnapshotPublisher,
        region_key: SigningKey,
        catalogue: Catalogue,
        settings: ImportSettings | None = None,
        lease: ImportLease | None = None,
        events: EventBus | None = None,
    ) -> None:
        self._db = db
        self._session = session
        self._store = store
        self._publisher = publisher
        self._key = region_key
        self._catalogue = catalogue
        self._settings = settings or ImportSettings()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[ImportSummary] | None = None
        self._running: asyncio.Task[object] | None = None
        self._lease = lease
        self._events = events
        self._watcher: asyncio.Task[None] | None = None
        self._lease_lost = False  # the running import lost the lease: leave the sets alone
        self._hand_over = False  # a stop at shutdown: another region resumes the import
        self._last: ImportSummary | None = None  # the summary _finish made last
        self._republishing = False  # republish() holds the lock
        self._republish_again = False  # asked for while one republish runs: publish once more

    # --- control ---------------------------------------------------------------

    def is_importing(self) -> bool:
        """True while an import runs here (or one was just started) or in another region.

        Another region's import is known from the lease as the watcher last read it.
        """
        return self.running_here() or (self._lease is not None and self._lease.held_elsewhere())

    def holds_lease(self) -> bool:
        """Whether this region holds the cluster's import lease (as last taken or renewed)."""
        return self._lease is not None and self._lease.held_here()

    def running_here(self) -> bool:
        """True while an import runs in this region (or one was just started).

        A republish (which holds the import lock for a moment) is no import: peer
        sync must not wait for it, and an import asked for meanwhile runs after it.
        """
        return self._importing() or (self._task is not None and not self._task.done())

    def _importing(self) -> bool:
        return self._lock.locked() and not self._republishing

    async def wait_idle(self) -> None:
        """Return once no import runs here (at once if none does), by waiting on it, not polling."""
        while self.running_here():
            if self._task is not None and not self._task.done():
                await asyncio.wait({self._task})
            else:
                async with self._lock:  # a run_import() called directly holds it
                    pass

    def start(self, *, reason: str, force: bool = False) -> bool:
        """Start an import in the background; False (logged) if one runs here or elsewhere."""
        if self.running_here():
            log.info("import_skipped", reason="already running", trigger=reason)
            return False
        if self._lease is not None and self._lease.held_elsewhere():
            log.info("import_skipped", reason=self._elsewhere(), trigger=reason)
            return False
        self._task = asyncio.get_running_loop().create_task(self.run_import(reason, force=force))
        return True

    async def stop(self, *, hand_over: bool = False) -> None:
        """Cancel a running import and wait for it; partial downloads stay for a resume.

        ``hand_over`` (a shutdown): the import stays pending in the cluster, so
        another region's watcher resumes it; otherwise it is no longer asked for.
        """
        tasks = {t for t in (self._task, self._running) if t is not None and not t.done()}
        if not tasks:
            return
        log.info("import_stop_requested")
        self._hand_over = hand_over
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)

    def start_watching(self) -> None:
        """Watch the cluster's import lease every heartbeat (call on the loop; needs a lease).

        Keeps :meth:`is_importing` current and takes over the lease of an import
        whose region died, running it here (reason ``takeover``).
        """
        if self._lease is None or (self._watcher is not None and not self._watcher.done()):
            return
        self._watcher = asyncio.get_running_loop().create_task(
            self._lease.watch(self.running_here, self._resume)
        )

    def stop_watching(self) -> None:
        """Take over no more imports (shutdown); a running import is not affected."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def refresh_lease(self) -> None:
        """Read the lease now (another region's import ended), not at the next heartbeat."""
        if self._lease is not None:
            with contextlib.suppress(Exception):
                await self._lease.refresh()

    def _resume(self, pending: str, force: bool) -> None:
        log.info("import_resumed", pending=pending, force=force)
        self.start(reason=TAKEOVER, force=force)

    def _elsewhere(self) -> str:
        cached = self._lease.cached if self._lease is not None else None
        holder = cached.holder if cached is not None else None
        return f"region {holder} is importing"

    async def republish(self, *, reason: str) -> bool:
        """Publish the stream again now; False if an import runs (it publishes at its end).

        A call while another republish runs is not dropped: that one publishes
        once more when it ends (what the store holds may have changed meanwhile).
        """
        if self._lock.locked():
            if self._republishing:
                self._republish_again = True
                return True
            return False
        async with self._lock:
            self._republishing, self._republish_again = True, True
            try:
                while self._republish_again:
                    self._republish_again = False
                    log.info("stream_republish", reason=reason)
                    await publish_stream(
                        self._db, self._publisher, self._key, keep=self._settings.keep_snapshots
                    )
            finally:
                self._republishing = False
        return True

    async def run_import(self, reason: str = "manual", *, force: bool = False) -> ImportSummary:
        """Import now; a second call while one runs is skipped (logged), not queued.

        ``force`` accepts an index older than the last one imported (rollback).
        Failures end in a summary with outcome ``failed``; cancelling raises
        CancelledError after recording the ``cancelled`` summary.
        """
        started = (
            self._task is not None
            and not self._task.done()
            and self._task is not asyncio.current_task()
        )  # start()ed, about to take the lock
        if self._importing() or started:
            log.info("import_skipped", reason="already running", trigger=reason)
            return ImportSummary(outcome="skipped", reason=reason)
        async with self._lock:
            self._running = asyncio.current_task()
            self._lease_lost = self._hand_over = False
            self._last = None
            try:
                if self._lease is None:
                    summary = await self._import_and_rerun(reason, force)
                else:
                    summary = await self._leased(self._lease, reason, force)
            except asyncio.CancelledError:
                if (cancelled := self._last_summary()) is not None:
                    await asyncio.shield(self._announce(cancelled))
                raise
            finally:
                self._running = None
            if summary.outcome != "skipped":
                await self._announce(summary)
            return summary

    async def _import_and_rerun(self, reason: str, force: bool) -> ImportSummary:
        summary = await self._import_once(reason, force)
        if summary.sources_changed:
            log.info("import_rerun", reason="sources or selections changed meanwhile")
            summary = await self._import_once(f"{reason} (re-run)", force)
        return summary

    async def _leased(self, lease: ImportLease, reason: str, force: bool) -> ImportSummary:
        """One import under the cluster's import lease: taken, renewed, released."""
        try:
            taken = await lease.acquire(reason, force=force)
        except asyncio.CancelledError:  # stopped while taking it: not left pending by mistake
            await asyncio.shield(lease.release(keep_pending=self._hand_over))
            raise
        except Exception as exc:  # noqa: BLE001 - the database is unreachable: the import fails
            return await self._unstarted(
                reason, f"could not take the import lease: {error_text(exc)}"
            )
        if not taken:
            log.info("import_skipped", reason=self._elsewhere(), trigger=reason)
            return ImportSummary(outcome="skipped", reason=reason)
        loop = asyncio.get_running_loop()
        work = loop.create_task(self._import_and_rerun(reason, force))
        keeper = loop.create_task(lease.keep())
        try:
            await asyncio.wait({work, keeper}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # stop(): the import records itself as cancelled
            keeper.cancel()
            work.cancel()
            await asyncio.shield(asyncio.wait({work, keeper}))
            await asyncio.shield(lease.release(keep_pending=self._hand_over))
            raise
        if not work.done():  # the lease is lost: another region may import now
            self._lease_lost = True
            work.cancel()
            await asyncio.wait({work})
            # _finish recorded the cancelled import
            return self._last_summary() or ImportSummary(outcome="cancelled", reason=reason)
        keeper.cancel()
        await asyncio.wait({keeper})
        try:
            return work.result()
        finally:
            await lease.release()

    def _last_summary(self) -> ImportSummary | None:
        """The summary of the last import that ended (None before any in this run)."""
        return self._last

    async def _unstarted(self, reason: str, error: str) -> ImportSummary:
        """The summary of an import that could not begin (the database is unreachable)."""
        tally = Tally(reason=reason)
        tally.errors.append(error)
        log.error("import_failed", error=error)
        return await self._finish(None, tally, "failed")

    async def _announce(self, summary: ImportSummary) -> None:
        """Tell the cluster the import ended (best effort: the bus logs what it cannot send)."""
        if self._events is None:
            return
        try:
            await self._events.publish(
                "import_finished", outcome=summary.outcome, published=summary.published
            )
        except Exception as exc:  # noqa: BLE001 - the import's outcome stands whatever happens
            log.warning("import_announce_failed", error=error_text(exc))

    # --- one import --------------------------------------------------------------

    async def _import_once(self, reason: str, force: bool) -> ImportSummary:
        tally = Tally(reason=reason)
        try:
            run_id: int | None = await repo_import.start_run(self._db)
        except Exception as exc:  # noqa: BLE001 - a full disk, or the database unreachable
            if is_disk_full(exc):
                await self._no_space(tally, exc)  # not even the run's row fits
            else:
                log.error("import_failed", error=error_text(exc))  # noqa: TRY400 - an outage
                tally.errors.append(f"The database could not be reached: {error_text(exc)}")
            return await self._finish(None, tally, "failed")
        log.info("import_started", reason=reason, force=force)
        try:
            await self._steps(tally, force)
        except asyncio.CancelledError:
            await asyncio.shield(self._settle(tally))
            await asyncio.shield(self._finish(run_id, tally, "cancelled"))
            raise
        except Exception as exc:  # every import must end with its summary, even after a bug
            if await self._out_of_space(exc):
                await self._no_space(tally, exc)
            else:
                log.exception("import_failed", error=error_text(exc))
                tally.errors.append(f"{type(exc).__name__}: {exc}")
            await self._settle(tally)
        return await self._finish(run_id, tally, "failed" if tally.errors else "ok")

    async def _steps(self, tally: Tally, force: bool) -> None:
        fingerprint = await self._ensure_source()
        described = await self._read_sources(tally)
        accepted = await self._guard_rollback(described, tally, force)
        selections = await self._selections()
        # The higher priority wins an image two sources offer (MAAS 3.8); ties by id.
        chosen = choose_images(
            sorted(accepted, key=lambda d: (-d.source.priority, d.source.id)), selections
        )
        log.info("images_selected", images=len(chosen), sources=len(accepted))
        held = await held_bytes(
            self._store, {f.sha256: f.size for c in chosen for f in c.wanted.files}
        )
        plan = self._plan(chosen, held, tally)
        if plan is None:
            return
        tally.bytes_to_write = sum(b.size - held.get(b.sha256, 0) for b in plan.to_fetch)
        created = await repo_import.write_wanted(self._db, [c.wanted for c in chosen], held)
        log.info("metadata_written", images=len(chosen), new=len(created))
        failed = await self._download(chosen, plan, held, tally)
        tally.images_added = sum(
            1
            for c in chosen
            if c.wanted.key in created and not any(f.sha256 in failed for f in c.wanted.files)
        )
        await self._remove(chosen, described, selections, tally)
        cleaned = await repo_import.clean_sets(self._db)
        log.info("sets_cleaned", sets_removed=cleaned)
        await set_default_releases(self._db)  # MAAS's set_global_default_releases
        published = await publish_stream(
            self._db, self._publisher, self._key, keep=self._settings.keep_snapshots
        )
        tally.published = published is not None
        await self._collect_garbage({b.sha256 for b in plan.to_fetch + plan.already_present})
        tally.sources_changed = fingerprint != await repo_sources.sources_fingerprint(self._db)

    async def _finish(self, run_id: int | None, tally: Tally, outcome: str) -> ImportSummary:
        summary = tally.summary(outcome)
        self._last = summary
        fields = dataclasses.asdict(summary)
        (log.info if outcome == "ok" else log.warning)("import_finished", **fields)
        if run_id is None:
            return summary
        try:
            await repo_import.finish_run(self._db, run_id, outcome, fields)
        except Exception as exc:  # noqa: BLE001 - a full disk, or the database unreachable
            reason = NO_SPACE if is_disk_full(exc) else DATABASE_UNREACHABLE
            log.error("import_run_not_recorded", reason=reason, error=error_text(exc))  # noqa: TRY400
        return summary

    async def _no_space(self, tally: Tally, exc: BaseException) -> None:
        """Name the import's failure ``no_space``, with the bytes it needed and those free."""
        if tally.failure == NO_SPACE:
            return
        if isinstance(exc, InsufficientSpaceError):
            need, free = exc.needed, exc.free
        else:
            need, free = tally.bytes_to_write, await self._free_bytes()
        tally.failure, tally.space_needed, tally.space_free = NO_SPACE, need, free
        tally.errors.append(
            f"Not enough disk space for the import: it needs {need} bytes, {free} bytes "
            f"are free ({error_text(exc)})"
        )
        log.error("import_no_space", reason=NO_SPACE, need=need, free=free, error=error_text(exc))

    async def _out_of_space(self, exc: BaseException) -> bool:
        """Whether ``exc`` comes of a full disk: it says so, or the store has no room left.

        Some tools only report that they failed (gpg signing the stream into a full
        disk says "could not sign"), so a failure while the store's filesystem has
        less than :data:`FULL_BELOW` free is named ``no_space`` too.
        """
        if is_disk_full(exc):
            return True
        try:
            return await self._store.free_bytes() < FULL_BELOW
        except OSError:
            return False  # unknown: the error stands as it is

    async def _free_bytes(self) -> int:
        try:
            return await self._store.free_bytes()
        except OSError:
            return 0

    async def _settle(self, tally: Tally) -> None:
        """After a stop or a crash: drop the sets left incomplete, publish the complete ones.

        After the lease was lost the sets are the new holder's: only publish.
        """
        try:
            if not self._lease_lost:
                await repo_import.clean_sets(self._db)
            tally.published = (
                await publish_stream(
                    self._db, self._publisher, self._key, keep=self._settings.keep_snapshots
                )
                is not None
            )
        except Exception as exc:  # a full disk, the database unreachable, a bug
            if await self._out_of_space(exc):  # what is held and published stays as it was
                await self._no_space(tally, exc)
                return
            log.exception("import_settle_failed", error=error_text(exc))
            tally.errors.append(f"after the import: {error_text(exc)}")

    # --- steps ---------------------------------------------------------------------

    async def _ensure_source(self) -> str:
        """Create the default source and selection if there is no source; the fingerprint."""
        s = self._settings
        if s.create_default_source and not await repo_sources.list_sources(self._db):
            try:
                source = await repo_sources.create_source(
                    self._db, url=s.default_source_url, keyring_filename=str(s.default_keyring)
                )
                await repo_sources.create_selection(
                    self._db,
                    source.id,
                    os="ubuntu",
                    release=s.default_release,
                    arches=default_arches(),
                    subarches=["*"],
                    labels=["*"],
                )
                log.info(
                    "default_source_created",
                    url=source.url,
                    release=s.default_release,
                    arches=default_arches(),
                )
            except DuplicateError:
                pass  # created meanwhile through the API
        return await repo_sources.sources_fingerprint(self._db)

    async def _read_sources(self, tally: Tally) -> list[SourceDescription]:
        described: list[SourceDescription] = []
        for source, result in await self._catalogue.refresh_all(reason="import"):
            tally.sources.append(source.url)
            if isinstance(result, SourceDescription):
                described.append(result)
                # Refused items are not imported; the rest of the source is. Nothing is
                # removed while a source offers what cannot be held (it may lie).
                tally.errors += [f"Refused (not imported): {r}" for r in result.refusals]
                tally.source_failed |= bool(result.refusals)
            else:
                tally.errors.append(error_message(source.url, result))
                tally.source_failed = True
        return described

    async def _guard_rollback(
        self, described: list[SourceDescription], tally: Tally, force: bool
    ) -> list[SourceDescription]:
        accepted: list[SourceDescription] = []
        for read in described:
            url, updated = read.source.url, read.index_updated
            last = await repo_catalogue.last_imported_index(self._db, url)
            if is_rollback(updated, last):
                if not force:
                    message = (
                        f"Refused the index of {url}: updated {updated}, older than "
                        f"{last} imported before (a rollback). Import with force to "
                        "accept it."
                    )
                    log.error(
                        "index_rollback_refused", url=url, updated=updated, last_imported=last
                    )
                    await repo_catalogue.record_error(self._db, read.source.id, message)
                    tally.errors.append(message)
                    tally.source_failed = True
                    continue
                log.warning("index_rollback_forced", url=url, updated=updated, last_imported=last)
            if updated is not None:
                await repo_catalogue.remember_imported_index(self._db, url, updated)
            refused = await self._guard_documents(read, tally, force)
            kept = tuple(p for p in read.products if p.content_id not in refused)
            accepted.append(dataclasses.replace(read, products=kept) if refused else read)
        return accepted

    async def _guard_documents(
        self, desc: SourceDescription, tally: Tally, force: bool
    ) -> set[str]:
        """The rollback guard per products document (mix and match); the refused content ids.

        A current index may list an older, validly signed products document:
        its ``updated`` or a product's newest version going backwards refuses it
        unless forced. Accepted documents are remembered.
        """
        refused: set[str] = set()
        url = desc.source.url
        for mark in desc.marks:
            last = await repo_imported.last_imported_products(self._db, url, mark.content_id)
            rollback = products_rollback(mark, last)
            if rollback is not None and not force:
                message = (
                    f"Refused {rollback.message} (a rollback). Import with force to accept it."
                )
                log.error(
                    "index_rollback_refused", url=url, content_id=mark.content_id, **rollback.fields
                )
                await repo_catalogue.record_error(self._db, desc.source.id, message)
                tally.errors.append(message)
                tally.source_failed = True
                refused.add(mark.content_id)
                continue
            if rollback is not None:
                log.warning(
                    "index_rollback_forced", url=url, content_id=mark.content_id, **rollback.fields
                )
            await repo_imported.remember_imported_products(
                self._db, url, mark.content_id, updated=mark.updated, versions=mark.newest
            )
        return refused

    async def _selections(self) -> dict[int, list[Selection]]:
        """The selections of every enabled source (a disabled one selects nothing)."""
        enabled = {s.id for s in await repo_sources.list_sources(self._db) if s.enabled}
        by_source: dict[int, list[Selection]] = defaultdict(list)
        for sel in await repo_sources.list_selections(self._db):
            if sel.boot_source_id not in enabled:
                continue
            by_source[sel.boot_source_id].append(
                Selection(
                    os=sel.os,
                    release=sel.release,
                    arches=sel.arches,
                    subarches=sel.subarches,
                    labels=sel.labels,
                )
            )
        return by_source

    def _plan(
        self, chosen: list[Chosen], held: dict[str, int], tally: Tally
    ) -> DownloadPlan | None:
        """The blobs to fetch and those held; None (import refused) on contradictory sizes."""
        try:
            return plan_blobs(chosen, held)
        except StreamFormatError as exc:
            refusal = exc
        # One sha256 with two sizes: one of them is a lie, so nothing is written or fetched.
        log.error("import_plan_refused", error=str(refusal))
        tally.errors.append(f"Refused the import: {refusal}")
        tally.source_failed = True
        return None

    async def _download(
        self, chosen: list[Chosen], plan: DownloadPlan, held: dict[str, int], tally: Tally
    ) -> set[str]:
        """Fetch the blobs the plan lacks; the sha256 of those that failed."""
        sources: dict[str, Chosen] = {}
        for c in chosen:
            for sha256 in c.urls:
                sources.setdefault(sha256, c)  # the first source offering a blob serves it
        missing = [
            DownloadRequest(
                url=sources[b.sha256].urls[b.sha256], sha256=b.sha256, size=b.size, name=b.paths[0]
            )
            for b in plan.to_fetch
        ]
        tally.files_reused = len(plan.already_present)
        if not missing:
            return set()
        log.info("downloads_started", files=len(missing), bytes=sum(r.size for r in missing))
        async with UpstreamSessions(
            self._db, self._session, fallback_proxy=self._settings.proxy
        ) as sessions:
            outcomes = await fetch_blobs(
                self._db,
                self._store,
                sessions,
                missing,
                held,
                concurrency=self._settings.concurrency,
                interval=self._settings.progress_interval_s,
                limits=self._settings.transfer,
            )
        failed = {o.request.sha256 for o in outcomes if not o.ok}
        tally.bytes = sum(o.bytes_received for o in outcomes)
        tally.files_fetched = sum(1 for o in outcomes if o.ok and not o.reused)
        tally.files_reused += sum(1 for o in outcomes if o.ok and o.reused)
        tally.files_failed = len(failed)
        full = next((o.error for o in outcomes if not o.ok and is_disk_full(o.error)), None)
        if full is not None:
            await self._no_space(tally, full)
        await self._record_file_failures([o for o in outcomes if not o.ok], sources, tally)
        log.info(
            "downloads_finished", fetched=tally.files_fetched, failed=len(failed), bytes=tally.bytes
        )
        return failed

    async def _record_file_failures(
        self, failures: list[DownloadOutcome], sources: dict[str, Chosen], tally: Tally
    ) -> None:
        by_source: dict[int, list[str]] = defaultdict(list)
        for outcome in failures:
            message = str(outcome.error)  # names the URL already
            tally.errors.append(message)
            by_source[sources[outcome.request.sha256].source_id].append(message)
        for source_id, messages in by_source.items():
            await repo_catalogue.record_error(
                self._db, source_id, f"{len(messages)} file(s) failed: {messages[0]}"
            )

    async def _remove(
        self,
        chosen: list[Chosen],
        described: list[SourceDescription],
        selections: dict[int, list[Selection]],
        tally: Tally,
    ) -> None:
        if tally.source_failed:
            log.warning("removals_skipped", reason="a source could not be read or was refused")
            return
        held = {r.key for r, _sets in await repo_resources.complete_sets(self._db)}
        plan = plan_removals(
            await repo_resources.list_synced(self._db),
            {c.wanted.key for c in chosen},
            held,
            {(e.os, e.arch, e.release) for d in described for e in d.entries},
            [s for sels in selections.values() for s in sels],
        )
        for resource in plan.kept:
            log.info(
                "image_kept_still_selected", name=resource.name, architecture=resource.architecture
            )
        tally.images_kept = len(plan.kept)
        if plan.refused:
            message = (
                f"Refused to delete all {len(plan.delete)} synced images that are no "
                "longer selected or offered: nothing new would replace them."
            )
            log.error("import_refused_to_delete_everything", images=len(plan.delete))
            tally.errors.append(message)
            return
        for resource in plan.delete:
            log.info("image_removed", name=resource.name, architecture=resource.architecture)
        tally.images_removed = await repo_import.delete_resources(
            self._db, [r.id for r in plan.delete]
        )

    async def _collect_garbage(self, wanted: set[str]) -> None:
        # Blobs of this import stay even if their set failed: a partial resumes next time.
        keep = (
            await repo_import.referenced_sha256(self._db)
            | await self._publisher.referenced_blobs()
            | wanted
        )
        await self._store.collect_garbage(keep)
