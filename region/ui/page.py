"""What the images page shows, read from the region's repositories and services.

:func:`read_page` gathers the source, what it offers, the selections, every
image with its status (the API's own rendering, region/api/boot_resources.py),
the racks, the last import and the hourly sync; the templates only lay it out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from region.api.boot_resources import regions_syncing, render_resource
from region.context import CTX, RegionContext
from region.db import catalogue as repo_catalogue
from region.db import resources as repo_resources
from region.db import sources as repo_sources
from region.db.catalogue import CatalogueEntry
from region.db.config import get_config
from region.db.page_reads import ImportRun, last_finished_import, resource_updated
from region.db.racks import list_racks
from region.db.sources import BootSource, Selection
from region.images.status import QUEUED
from region.rackhub.state import rack_status, rack_sync_summary
from region.ui.selection_diff import RowKey

FAILED = "Failed"
RACK_WORDS = {
    "synced": "Synced",
    "syncing": "Syncing",
    "out-of-sync": "Out of sync",
    "region-importing": "Waiting for the region's import",
    "unknown": "Unknown (not connected or never reported)",
}
_VERSION = re.compile(r"(\d+)\.(\d+)")


class Scheduled(Protocol):
    """The hourly import's scheduler (region/images/scheduler.py's AutoImport)."""

    def job(self) -> Any:
        """The APScheduler job, or None."""


@dataclass
class ReleaseRow:
    """One os/release row of a selection table."""

    os: str
    release: str
    title: str
    support: str
    lts: bool
    arches: frozenset[str]  # offered by the source
    ticked: frozenset[str]
    subarches: str = "*"
    commissioning: bool = False
    offered: bool = True  # False: selected, but the source no longer offers it
    error: str = ""

    @property
    def key(self) -> RowKey:
        """(os, release)."""
        return (self.os, self.release)


@dataclass
class OsTable:
    """The releases × arches table of one OS."""

    os: str
    title: str
    arches: list[str]
    rows: list[ReleaseRow]


@dataclass
class ImageRow:
    """One image the region holds, with its status as the API renders it."""

    id: int
    name: str
    title: str
    architecture: str
    status: str
    size: int
    updated: str
    uploaded: bool
    reason: str = ""

    @property
    def dom_id(self) -> str:
        """A stable id for the status cell (announcements compare by it)."""
        return "img-" + re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.name}-{self.architecture}")


@dataclass
class RackRow:
    """One rack and where it stands."""

    hostname: str
    system_id: str
    state: str
    last_sync: str
    error: str


@dataclass
class PageState:
    """Everything the images page renders."""

    source: BootSource | None
    source_count: int
    choice: str  # "maasio", "custom" or "" (no source)
    tables: list[OsTable]
    images: list[ImageRow]
    custom_images: list[ImageRow]
    importing: bool
    last_import: ImportRun | None
    source_errors: list[tuple[str, str]]
    warnings: list[str]
    racks: list[RackRow]
    auto_import: bool
    next_sync: str
    last_sync: str
    commissioning_release: str
    catalogue_known: bool
    extra: dict[str, Any] = field(default_factory=dict)


def os_title(os: str) -> str:
    """``Ubuntu``, ``CentOS``... for an OS name."""
    return {"ubuntu": "Ubuntu", "centos": "CentOS", "rhel": "RHEL"}.get(os, os.capitalize())


def _version(release_title: str | None) -> tuple[int, int]:
    match = _VERSION.search(release_title or "")
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def support_text(support_eol: str | None, today: str) -> str:
    """``Supported until 2029-05-31`` or ``End of life since ...`` ('' when the stream is silent)."""
    if not support_eol:
        return ""
    return (
        f"Supported until {support_eol}"
        if support_eol >= today
        else f"End of life since {support_eol}"
    )


def build_tables(
    entries: Iterable[CatalogueEntry],
    selections: Iterable[Selection],
    *,
    commissioning_release: str,
    today: str,
) -> list[OsTable]:
    """Selection tables per OS (Ubuntu first, LTS releases first, newest first)."""
    by_row: dict[RowKey, list[CatalogueEntry]] = {}
    for entry in entries:
        if entry.bootloader_type:
            continue
        by_row.setdefault((entry.os, entry.release), []).append(entry)
    selected: dict[RowKey, Selection] = {}
    for each in selections:
        if "*" not in (each.os, each.release):
            selected.setdefault((each.os, each.release), each)
    rows: dict[str, list[ReleaseRow]] = {}
    for key in {*by_row, *selected}:
        offered = by_row.get(key, [])
        first = offered[0] if offered else None
        arches = frozenset(e.arch for e in offered)
        sel = selected.get(key)
        ticked: frozenset[str] = frozenset()
        if sel is not None:
            ticked = arches if "*" in sel.arches else frozenset(sel.arches)
        title = (first.release_title if first else None) or key[1]
        rows.setdefault(key[0], []).append(
            ReleaseRow(
                os=key[0],
                release=key[1],
                title=title,
                support=support_text(first.support_eol if first else None, today),
                lts="LTS" in title,
                arches=arches,
                ticked=ticked,
                subarches=",".join(sel.subarches) if sel and sel.subarches else "*",
                commissioning=key == ("ubuntu", commissioning_release),
                offered=bool(offered),
            )
        )
    tables = []
    for os in sorted(rows, key=lambda o: (o != "ubuntu", o)):
        ordered = sorted(
            rows[os], key=lambda r: (not r.lts, tuple(-v for v in _version(r.title)), r.release)
        )
        columns = sorted({a for r in ordered for a in r.arches | r.ticked})
        tables.append(OsTable(os=os, title=os_title(os), arches=columns, rows=ordered))
    return tables


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return ""


def short_time(value: str | None) -> str:
    """A stored timestamp as ``2025-07-18 12:00:03 UTC`` ('' for None)."""
    if not value:
        return ""
    return value.replace("T", " ")[:19] + " UTC"


def is_maasio(source: BootSource, ctx: RegionContext) -> bool:
    """True when ``source`` is the configured default (stable) stream."""
    return source.url.rstrip("/") == ctx.config.default_source_url.rstrip("/")


async def read_images(ctx: RegionContext, last: ImportRun | None) -> list[ImageRow]:
    """Every image with its live status (also what the status stream sends)."""
    connected = ctx.racks.connected_ids() if ctx.racks is not None else frozenset()
    racks = await rack_sync_summary(ctx.db, await ctx.publisher.current_id(), connected=connected)
    updated = await resource_updated(ctx.db)
    importing = ctx.importer.is_importing()
    failure = ""
    if last is not None and last.outcome == "failed" and last.summary.get("errors"):
        failure = str(last.summary["errors"][0])
    syncing = await regions_syncing(ctx)
    rows = []
    for resource, newest in await repo_resources.list_resources(ctx.db):
        data = render_resource(resource, newest, racks, syncing.get(resource.id, ()))
        status, reason = str(data["status"]), ", ".join(data.get("syncing_regions", ()))
        if (not importing and failure and newest is not None and not newest.complete) or (
            not importing and failure and newest is None
        ):
            status, reason = FAILED, failure
        rows.append(
            ImageRow(
                id=resource.id,
                name=resource.name,
                title=str(resource.extra.get("title") or ""),
                architecture=resource.architecture,
                status=status,
                size=newest.total if newest else 0,
                updated=short_time(updated.get(resource.id)),
                uploaded=resource.rtype == repo_resources.UPLOADED,
                reason=reason,
            )
        )
    held = {(r.name, r.architecture.split("/")[0]) for r in rows}
    for sel in await repo_sources.list_selections(ctx.db):
        if "*" in (sel.os, sel.release):
            continue
        for arch in sel.arches:
            name = f"{sel.os}/{sel.release}"
            if arch == "*" or (name, arch) in held:
                continue
            rows.append(  # selected, nothing held yet: queued, or failed with the reason
                ImageRow(
                    id=0,
                    name=name,
                    title="",
                    architecture=arch,
                    status=FAILED if failure and not importing else QUEUED,
                    size=0,
                    updated="",
                    uploaded=False,
                    reason=failure if not importing else "",
                )
            )
    return rows


async def read_racks(ctx: RegionContext) -> list[RackRow]:
    """Every registered rack with its sync state in words."""
    connected = ctx.racks.connected_ids() if ctx.racks is not None else frozenset()
    current = await ctx.publisher.current_id()
    importing = ctx.importer.is_importing()
    return [
        RackRow(
            hostname=r.hostname,
            system_id=r.system_id,
            state=RACK_WORDS[
                rack_status(
                    r,
                    connected=r.system_id in connected,
                    current_snapshot_id=current,
                    region_importing=importing,
                )
            ],
            last_sync=short_time(r.last_sync),
            error=r.error or "",
        )
        for r in await list_racks(ctx.db)
    ]


async def read_page(
    app: web.Application, scheduler: Scheduled | None, today: str | None = None
) -> PageState:
    """The whole page's state."""
    ctx = app[CTX]
    sources = await repo_sources.list_sources(ctx.db)
    source = sources[0] if sources else None
    entries: list[CatalogueEntry] = []
    selections: list[Selection] = []
    source_errors: list[tuple[str, str]] = []
    warnings: list[str] = []
    known = False
    for s in sources:
        status = await repo_catalogue.get_status(ctx.db, s.id)
        if status.last_error:
            source_errors.append((s.url, status.last_error))
        warnings += status.warnings
    if source is not None:
        entries = await repo_catalogue.available(ctx.db, source.id)
        selections = await repo_sources.list_selections(ctx.db, source.id)
        known = await repo_catalogue.has_catalogue(ctx.db, source.id)
    commissioning = str(await get_config(ctx.db, "commissioning_distro_series"))
    last = await last_finished_import(ctx.db)
    images = await read_images(ctx, last)
    job = scheduler.job() if scheduler is not None else None
    return PageState(
        source=source,
        source_count=len(sources),
        choice="" if source is None else ("maasio" if is_maasio(source, ctx) else "custom"),
        tables=build_tables(
            entries,
            selections,
            commissioning_release=commissioning,
            today=today or datetime.now(UTC).date().isoformat(),
        ),
        images=[i for i in images if not i.uploaded],
        custom_images=[i for i in images if i.uploaded],
        importing=ctx.importer.is_importing(),
        last_import=last,
        source_errors=source_errors,
        warnings=warnings,
        racks=await read_racks(ctx),
        auto_import=bool(await get_config(ctx.db, "boot_images_auto_import")),
        next_sync=_when(getattr(job, "next_run_time", None)),
        last_sync=short_time(last.finished if last else None),
        commissioning_release=commissioning,
        catalogue_known=known,
    )


def offered_rows(tables: Iterable[OsTable]) -> Mapping[RowKey, frozenset[str]]:
    """Row → arches offered, for every row the tables show."""
    return {row.key: row.arches for table in tables for row in table.rows}
