"""Read a signed stream: the index, then every products document it lists, each verified.

The region (its upstream sources), the rack (its region's stream) and
``bootsync mirror`` all read streams with :func:`read_stream`. They differ in
two things only, which they pass in:

- how a document is fetched: a callable taking a stream-relative path and
  returning a :class:`Document` (:func:`http_documents` for an upstream URL;
  the rack brings its region client, with ETag and URL rotation);
- whom to trust: a :class:`TrustPolicy` (a source's keyring, the rack's pinned
  region key, or explicitly nobody for unsigned JSON).

:func:`resolve_source` turns a source URL into the stream's root and index path.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import unquote

import aiohttp

from common.errors import SignatureError, UnknownKeyError
from common.transfer.fetch import CachedDocument, DocumentCache, fetch_conditional, join_url
from common.transfer.limits import TransferLimits
from common.trust.keyrings import Keyring
from common.trust.signing import VerifiedDocument, verify_clearsigned
from simplestreams import (
    PRODUCTS_FORMAT,
    Index,
    ProductList,
    StreamFormatError,
    parse_index,
    parse_products,
)
from simplestreams.errors import Refusal

CLEARSIGN_HEADER = b"-----BEGIN PGP SIGNED MESSAGE-----"
_CLEARSIGNED = re.compile(rb"\s*" + re.escape(CLEARSIGN_HEADER))
SIGNED_INDEX_PATH = "streams/v1/index.sjson"
UNSIGNED_INDEX_PATH = "streams/v1/index.json"
_INDEX_RE = re.compile(r"streams/v1/[^/]*\.s?json$")


class Document(Protocol):
    """A fetched document: the URL it came from and its bytes."""

    @property
    def url(self) -> str: ...

    @property
    def body(self) -> bytes: ...


D = TypeVar("D", bound=Document)
T = TypeVar("T")


@dataclass(frozen=True)
class FetchedDocument:
    """A document fetched from an upstream server.

    ``fresh``: the body with the validators it was served with, when it is new to
    the cache it was fetched through (:func:`keep_verified` stores it once verified).
    """

    url: str
    body: bytes
    fresh: CachedDocument | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class StreamSource:
    """Where a stream lives: its root URL and the path of its index under that root."""

    base_url: str
    index_path: str

    @property
    def index_url(self) -> str:
        """The absolute URL of the index."""
        return join_url(self.base_url, self.index_path)

    @property
    def signed(self) -> bool:
        """False for a ``.json`` index, which is read without signatures."""
        return not self.index_path.endswith(".json")


def resolve_source(url: str, *, signed: bool) -> StreamSource:
    """The stream at ``url``: a mirror root, or the full URL of an index under ``streams/v1/``.

    A root gets the signed index (``index.sjson``) if ``signed``, else ``index.json``.
    """
    match = _INDEX_RE.search(url)
    if match:
        return StreamSource(base_url=url[: match.start()], index_path=unquote(match[0]))
    base = url if url.endswith("/") else url + "/"
    return StreamSource(
        base_url=base, index_path=SIGNED_INDEX_PATH if signed else UNSIGNED_INDEX_PATH
    )


def http_documents(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    limits: TransferLimits | None = None,
    cache: DocumentCache | None = None,
) -> Callable[[str], Awaitable[FetchedDocument]]:
    """Fetch stream-relative paths under ``base_url`` (bounded, paced and retried).

    ``limits``: the largest document and the minimum rate (see fetch_document).
    ``cache``: documents fetched before, asked for conditionally (ETag /
    Last-Modified) and reused on 304; read_stream verifies them like any other.
    Nothing is stored here: pass ``keep_verified(cache)`` to read_stream.
    """

    async def get(path: str) -> FetchedDocument:
        url = join_url(base_url, path)
        cached = await cache.get(url) if cache is not None else None
        got = await fetch_conditional(session, url, cached=cached, limits=limits)
        fresh = got if cache is not None and got is not cached and got.validated else None
        return FetchedDocument(url=url, body=got.body, fresh=fresh)

    return get


def keep_verified(cache: DocumentCache) -> Callable[[FetchedDocument], Awaitable[None]]:
    """read_stream's ``on_verified`` for :func:`http_documents`: store what verified, if new."""

    async def keep(document: FetchedDocument) -> None:
        if document.fresh is not None:
            await cache.put(document.url, document.fresh)

    return keep


@dataclass(frozen=True)
class TrustPolicy:
    """Whom :func:`read_stream` trusts.

    With a ``keyring`` every document must be clearsigned by one of its keys,
    and with a ``fingerprint`` too by exactly that primary key (a pinned key).
    ``keyring=None`` means the caller explicitly accepts unsigned JSON, and only
    that: a clearsigned document cannot be trusted without a keyring.
    """

    keyring: Keyring | None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.keyring is None and self.fingerprint is not None:
            raise ValueError("a pinned fingerprint needs the keyring holding its key")

    async def verify(self, data: bytes, *, source: str) -> VerifiedDocument:
        """Pass ``data`` through the signature gate; raises a SignatureError subclass."""
        return await asyncio.to_thread(self.check, data, source=source)

    def check(self, data: bytes, *, source: str) -> VerifiedDocument:
        """:meth:`verify` for a worker thread: runs gpg, blocking."""
        if self.keyring is None:
            if _CLEARSIGNED.match(data):
                raise SignatureError(
                    "clearsigned document, but no keyring to verify it with", source=source
                )
            return VerifiedDocument(payload=data, fingerprint=None, signed=False)
        verified = verify_clearsigned(data, self.keyring, source=source)
        if self.fingerprint is not None and verified.fingerprint != self.fingerprint:
            # A keyring may hold more keys than the one pinned; only that one is trusted.
            raise UnknownKeyError(
                f"signed by {verified.fingerprint}, not by the pinned key {self.fingerprint}",
                source=source,
            )
        return verified


@dataclass(frozen=True)
class Stream(Generic[D]):
    """A stream as read: its verified index and the products documents it lists."""

    index: Index
    index_document: D
    signer: str | None  # fingerprint of the index's signer; None when read unsigned
    products: Mapping[str, ProductList]  # content id -> products document, in index order
    documents: Mapping[str, D]  # content id -> that document as fetched
    # Read leniently: each product version, or products document, left out, and why.
    refusals: tuple[Refusal, ...] = ()


async def read_stream(
    get: Callable[[str], Awaitable[D]],
    index_path: str,
    trust: TrustPolicy,
    *,
    on_verified: Callable[[D], Awaitable[None]] | None = None,
    lenient: bool = False,
) -> Stream[D]:
    """Fetch, verify and parse the index at ``index_path``, then each products document.

    ``get`` fetches a stream-relative path. Index entries without a path or of
    another format than ``products:1.0`` are skipped. Raises what ``get``
    raises (UpstreamError), SignatureError, or StreamFormatError (also for a
    products document whose content_id is not the one the index gives it).

    ``lenient`` (a region reading an upstream, a mirror): a product version
    with a bad item is left out, and a products document that cannot be parsed
    (malformed JSON, nested too deeply, a key given twice) is left out whole;
    the rest of the stream is read, and each is listed in ``Stream.refusals``.
    Without it (a rack reading its region) the first fault raises.

    Each document is verified and parsed in one worker thread: its verified
    text never reaches the event loop and is dropped once parsed; only the
    document as fetched and its parsed form are kept. ``on_verified`` is awaited
    with each document that verified and parsed (a cache keeps it then).
    """
    index_document = await get(index_path)
    index, signer = await asyncio.to_thread(_verify_and_parse, trust, index_document, parse_index)
    if on_verified is not None:
        await on_verified(index_document)
    products: dict[str, ProductList] = {}
    documents: dict[str, D] = {}
    refusals: list[Refusal] = []

    async def fetch_one(path: str) -> tuple[D, ProductList | StreamFormatError, list[Refusal]]:
        document = await get(path)
        found: list[Refusal] = []
        parse = partial(parse_products, refusals=found) if lenient else parse_products
        try:
            product_list, _signer = await asyncio.to_thread(
                _verify_and_parse, trust, document, parse
            )
        except StreamFormatError as exc:
            if not lenient:
                raise
            return document, exc, found
        return document, product_list, found

    # The products documents are fetched and verified at once (each gpg run is a
    # process of its own: in a row they were most of a small mirror's metadata time);
    # they are then taken in index order, as before.
    wanted = {
        content_id: entry.path
        for content_id, entry in index.entries.items()
        if entry.path is not None and entry.format == PRODUCTS_FORMAT
    }
    fetched = await _all_or_first_error([fetch_one(path) for path in wanted.values()])
    for content_id, (document, outcome, found) in zip(wanted, fetched, strict=True):
        if isinstance(outcome, StreamFormatError):
            refusals.append(Refusal(outcome.location, outcome.reason))
            continue
        product_list = outcome
        refusals += found
        if product_list.content_id != content_id:
            raise StreamFormatError(
                f"{document.url}: content_id",
                f"{product_list.content_id!r}, but the index says {content_id!r}",
            )
        if on_verified is not None:
            await on_verified(document)
        products[content_id] = product_list
        documents[content_id] = document
    return Stream(
        index=index,
        index_document=index_document,
        signer=signer,
        products=products,
        documents=documents,
        refusals=tuple(refusals),
    )


async def _all_or_first_error(jobs: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Await every job at once; results in order, or the first failure raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job) for job in jobs]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def _verify_and_parse(
    trust: TrustPolicy, document: Document, parse: Callable[..., T]
) -> tuple[T, str | None]:
    """Verify ``document`` and parse its text with ``parse`` (blocking): result and signer."""
    verified = trust.check(document.body, source=document.url)
    return parse(verified.payload, source=document.url), verified.fingerprint
