"""What each boot source offers: fetched, verified, described, and kept per source.

:meth:`Catalogue.describe_source` reads a source (signed index, then every
products document, newest version of each product) into a
:class:`SourceDescription`. :meth:`Catalogue.refresh_all` does that for every
source and stores the result: the catalogue rows on success, the error on
failure (kept per source and shown in the API). The importer reuses the same
descriptions, so an import reads each source once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import aiohttp

from common.errors import BootsyncError, SignatureError, error_text
from common.ops.logging import get_logger
from common.transfer.limits import TransferLimits
from common.transfer.streams import (
    TrustPolicy,
    http_documents,
    keep_verified,
    read_stream,
    resolve_source,
)
from common.trust.keyrings import Keyring, aload_keyring
from region.config import keyring_file
from region.db import catalogue as repo_catalogue
from region.db import sources as repo_sources
from region.db.catalogue import CatalogueEntry
from region.db.connection import Database
from region.db.http_cache import DatabaseDocumentCache
from region.db.sources import BootSource, default_skip_verification
from region.images.proxy import UpstreamSessions
from simplestreams import (
    ProductList,
    StreamFormatError,
    image_spec_of,
    newest_versions,
    product_fields,
)
from simplestreams.screen import DEFAULT_MAX_ITEM_SIZE, Refusal, screen_products

log = get_logger("catalogue")

DEFAULT_FROZEN_AFTER_HOURS = 7 * 24.0
_OS_TITLES = {"ubuntu": "Ubuntu", "centos": "CentOS", "rhel": "RHEL"}


@dataclass(frozen=True)
class ProductsMark:
    """What the rollback guard compares of one products document, as the source signed it."""

    content_id: str
    url: str  # where the document was read
    updated: str | None  # the document's own `updated`
    newest: Mapping[str, str]  # product name -> its newest version name


@dataclass(frozen=True)
class SourceDescription:
    """One source as read just now: its newest products and its catalogue.

    ``products`` holds no refused version: an item that could not be read
    (read_stream, leniently) or held (:func:`simplestreams.screen.screen_products`)
    refuses its version, and a products document that could not be read is
    refused whole; each is listed in ``refusals`` (and in ``warnings``).
    ``marks`` describe the documents read, before screening.
    """

    source: BootSource
    index_url: str
    base_url: str
    index_updated: str | None  # the index's own `updated`, as the source signed it
    products: tuple[ProductList, ...]  # newest version of every product, per document
    entries: tuple[CatalogueEntry, ...]
    warnings: tuple[str, ...]
    marks: tuple[ProductsMark, ...] = ()
    refusals: tuple[Refusal, ...] = ()


# A source and what reading it gave: its description, or the error.
SourceOutcome = tuple[BootSource, SourceDescription | BootsyncError]


def parse_updated(text: str | None) -> datetime | None:
    """An index ``updated`` (RFC 2822 or ISO 8601) as an aware datetime; None if unreadable."""
    if not text:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def product_title(fields: Mapping[str, str]) -> str:
    """A display title (``Ubuntu 24.04 LTS``); ``title`` wins, bootloaders have none."""
    if fields.get("title"):
        return fields["title"]
    release_title = fields.get("release_title", "")
    if not release_title:
        return ""
    os_title = fields.get("os_title") or _OS_TITLES.get(fields.get("os", ""), "")
    if os_title and release_title.startswith(os_title):
        os_title = ""
    return " ".join(w for w in (os_title, release_title, fields.get("gadget_title", "")) if w)


def catalogue_entry(fields: Mapping[str, str]) -> CatalogueEntry:
    """The catalogue row of a product, from its flattened fields."""
    spec = image_spec_of(fields)
    return CatalogueEntry(
        os=spec.os,
        arch=spec.arch,
        subarch=spec.subarch,
        release=spec.release,
        label=spec.label,
        kflavor=spec.kflavor,
        bootloader_type=spec.bootloader_type,
        release_codename=fields.get("release_codename"),
        release_title=fields.get("release_title"),
        support_eol=fields.get("support_eol"),
        title=product_title(fields),
    )


def error_message(url: str, exc: BaseException) -> str:
    """The per-source error shown in the API (MAAS's wording)."""
    if isinstance(exc, SignatureError):
        return (
            f"Failed to import images from {url} ({error_text(exc)}). "
            "Verify network connectivity and try again."
        )
    return f"Failed to import images from {url}: {error_text(exc)}"


def frozen_warning(url: str, updated: str | None, max_age: timedelta, now: datetime) -> str | None:
    """A warning when the signed index is older than ``max_age`` (a frozen mirror)."""
    when = parse_updated(updated)
    if when is None or now - when <= max_age:
        return None
    hours = (now - when).total_seconds() / 3600
    return (
        f"The index of {url} was last updated {updated} ({hours:.0f} hours ago): "
        "the mirror may be frozen or replaying old images."
    )


async def _keyring(source: BootSource) -> Keyring:
    if source.keyring_data:
        return await aload_keyring(source.keyring_data, name=f"keyring of {source.url}")
    # The file is read now, at import time: a bad path fails the import, not the save.
    return await aload_keyring(await keyring_file(source.keyring_filename))


class Catalogue:
    """Reads sources and keeps their catalogues; implements ``CatalogueControl``.

    ``session`` is the region's HTTP session (a proxied one is made per refresh
    when the proxy config says so). ``frozen_after_hours``: how old a signed
    index may be before the source gets a frozen-mirror warning. ``proxy``: the
    config file's proxy, used unless ``http_proxy`` is set through the API.
    ``limits``: the largest metadata document and the minimum transfer rate.
    ``max_item_size``: items claiming more bytes are refused (their version with them).
    """

    def __init__(
        self,
        db: Database,
        session: aiohttp.ClientSession,
        *,
        frozen_after_hours: float = DEFAULT_FROZEN_AFTER_HOURS,
        proxy: str = "",
        limits: TransferLimits | None = None,
        max_item_size: int = DEFAULT_MAX_ITEM_SIZE,
    ) -> None:
        self._db = db
        self._session = session
        self._proxy = proxy
        self._limits = limits or TransferLimits()
        self._max_item_size = max_item_size
        self._frozen_after = timedelta(hours=frozen_after_hours)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._pending: list[str] = []

    def schedule_refresh(self, *, reason: str) -> None:
        """Refresh every source soon, in one background task (requests coalesce)."""
        self._pending.append(reason)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refresh_pending())

    async def _refresh_pending(self) -> None:
        while self._pending:
            reasons, self._pending = self._pending, []
            try:
                await self.refresh_all(reason=",".join(sorted(set(reasons))))
            except Exception as exc:  # a background task: log, and serve the next request
                log.exception("catalogue_refresh_crashed", error=error_text(exc))

    async def close(self) -> None:
        """Cancel a background refresh and wait for it to end."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def refresh_all(self, *, reason: str = "") -> list[SourceOutcome]:
        """Read every enabled source (by id), store catalogues and errors; the outcome of each."""
        async with self._lock:
            sources = []
            for source in await repo_sources.list_sources(self._db):
                if source.enabled:
                    sources.append(source)
                else:  # MAAS: images are not downloaded from a disabled source
                    log.info("boot_source_skipped", url=source.url, reason="disabled")
            async with UpstreamSessions(
                self._db, self._session, fallback_proxy=self._proxy
            ) as sessions:
                return [
                    (source, await self._refresh_one(source, sessions.for_url(source.url), reason))
                    for source in sources
                ]

    async def _refresh_one(
        self, source: BootSource, session: aiohttp.ClientSession, reason: str
    ) -> SourceDescription | BootsyncError:
        """Read and store one source; any failure is that source's error, kept for the API."""
        try:
            return await self._read_and_store(source, session, reason)
        except Exception as exc:  # noqa: BLE001 - of any kind: one source never stops the others
            expected = isinstance(exc, BootsyncError | StreamFormatError)
            error = exc if isinstance(exc, BootsyncError) else BootsyncError(error_text(exc))
            # A failure of a kind not foreseen keeps its traceback (and is an error).
            (log.warning if expected else log.exception)(
                "catalogue_refresh_failed", url=source.url, reason=error_text(exc)
            )
            if await self._unchanged(source):
                await repo_catalogue.record_error(
                    self._db, source.id, error_message(source.url, exc)
                )
            return error

    async def _read_and_store(
        self, source: BootSource, session: aiohttp.ClientSession, reason: str
    ) -> SourceDescription:
        description = await self.describe_source(source, session=session)
        if await self._unchanged(source):
            diff = await repo_catalogue.replace_catalogue(
                self._db, source.id, list(description.entries)
            )
            await repo_catalogue.record_checked(
                self._db,
                source.id,
                index_updated=description.index_updated,
                warnings=list(description.warnings),
            )
            log.info(
                "catalogue_refreshed",
                url=source.url,
                images=len(description.entries),
                added=diff.added,
                updated=diff.updated,
                removed=diff.removed,
                reason=reason,
            )
        return description

    async def _unchanged(self, source: BootSource) -> bool:
        # The source may have been edited or deleted while we were reading it.
        now = await repo_sources.get_source(self._db, source.id)
        return now is not None and (
            now.url,
            now.keyring_filename,
            now.keyring_data,
            now.skip_keyring_verification,
        ) == (
            source.url,
            source.keyring_filename,
            source.keyring_data,
            source.skip_keyring_verification,
        )

    async def describe_source(
        self,
        source: BootSource,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> SourceDescription:
        """Fetch, verify and parse ``source``; newest version of each product.

        A source with ``skip_keyring_verification`` is read from its unsigned
        ``index.json`` (the one its URL names, or the one under its root), as
        MAAS does (with a warning); any other must be signed by the source's
        keyring, and an unsigned ``.json`` URL without that flag is refused
        (SignatureError). Raises KeyringError, SignatureError, UpstreamError or
        StreamFormatError.
        """
        where = resolve_source(source.url, signed=not source.skip_keyring_verification)
        unsigned = not where.signed
        if unsigned and not source.skip_keyring_verification:
            raise SignatureError(
                "the URL names an unsigned index (.json), read only when "
                "skip_keyring_verification is set on the source",
                source=where.index_url,
            )
        trust = TrustPolicy(None if unsigned else await _keyring(source))
        # Metadata is asked for conditionally (ETag / Last-Modified kept in the database):
        # an upstream with nothing new sends 304s, and the kept bytes are verified again.
        cache = DatabaseDocumentCache(self._db)
        stream = await read_stream(
            http_documents(
                session or self._session, where.base_url, limits=self._limits, cache=cache
            ),
            where.index_path,
            trust,
            on_verified=keep_verified(cache),
            lenient=True,
        )
        index = stream.index
        products: list[ProductList] = []
        entries: list[CatalogueEntry] = []
        marks: list[ProductsMark] = []
        # What could not be read (a version with a bad item, an unreadable document) is
        # refused as what could not be held is: the rest of the source is imported.
        refusals: list[Refusal] = list(stream.refusals)
        for refusal in stream.refusals:
            log.warning(
                "stream_item_refused",
                url=source.url,
                location=refusal.location,
                reason=refusal.reason,
            )
        for content_id, product_list in stream.products.items():
            url = stream.documents[content_id].url
            newest = newest_versions(product_list)
            marks.append(
                ProductsMark(
                    content_id=content_id,
                    url=url,
                    updated=product_list.updated,
                    newest={name: max(p.versions) for name, p in newest.products.items()},
                )
            )
            screened = await asyncio.to_thread(
                screen_products,
                newest,
                source=url,
                max_item_size=self._max_item_size,
                image_names=True,
            )
            for refusal in screened.refusals:
                log.warning(
                    "stream_item_refused",
                    url=source.url,
                    location=refusal.location,
                    reason=refusal.reason,
                )
            refusals += screened.refusals
            products.append(screened.products)
            entries += [
                catalogue_entry(product_fields(screened.products, p))
                for p in screened.products.products.values()
            ]
        warnings = [
            w
            for w in (
                frozen_warning(source.url, index.updated, self._frozen_after, datetime.now(UTC)),
                "The index is not signed: nothing verifies what this source serves."
                if unsigned
                else None,
            )
            if w
        ]
        for warning in warnings:
            log.warning("source_warning", url=source.url, warning=warning)
        warnings += [f"Refused (not imported): {refusal}" for refusal in refusals]
        return SourceDescription(
            source=source,
            index_url=where.index_url,
            base_url=where.base_url,
            index_updated=index.updated,
            products=tuple(products),
            entries=tuple(entries),
            warnings=tuple(warnings),
            marks=tuple(marks),
            refusals=tuple(refusals),
        )


async def describe_unsaved(
    db: Database,
    session: aiohttp.ClientSession,
    *,
    url: str,
    keyring_filename: str = "",
    keyring_data: bytes = b"",
    skip_keyring_verification: bool | None = None,
    proxy: str = "",
    frozen_after_hours: float = DEFAULT_FROZEN_AFTER_HOURS,
) -> SourceDescription:
    """What a source held nowhere offers, read as a refresh reads a saved one; nothing stored.

    The proxy settings apply as to a refresh. The page's Connect button and
    ``POST boot-sources/?op=fetch`` both read through here. Raises as
    :meth:`Catalogue.describe_source`.
    """
    source = BootSource(
        id=0,
        url=url,
        keyring_filename=keyring_filename,
        keyring_data=keyring_data,
        created="",
        updated="",
        skip_keyring_verification=default_skip_verification(url)
        if skip_keyring_verification is None
        else skip_keyring_verification,
    )
    reader = Catalogue(db, session, frozen_after_hours=frozen_after_hours, proxy=proxy)
    async with UpstreamSessions(db, session, fallback_proxy=proxy) as sessions:
        return await reader.describe_source(source, session=sessions.for_url(url))
