"""The rack's HTTP calls to its region: the rack side of :mod:`common.rackproto`.

Every call goes to the current region URL; when it cannot connect, the next
configured URL is tried (the URLs rotate), so a rack with several region URLs
keeps working while one region host is down. Requests go through
:func:`common.transfer.http.request_bounded` and stream documents are retried
by :func:`common.transfer.retry.retrying`, so aiohttp's exceptions stop there:
callers see :mod:`common.errors` types.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from common.errors import (
    ConnectError,
    HTTPStatusError,
    OversizeError,
    UpstreamError,
    is_retryable,
)
from common.ops.logging import get_logger
from common.rackproto import (
    AUTH_SCHEME,
    CREDENTIAL_HEADER,
    EVENTS_PATH,
    KEEPALIVE_S,
    REGISTER_PATH,
    STATUS_PATH,
    STREAM_INDEX,
    STREAM_PREFIX,
    RackStatus,
    Registration,
    RegistrationReply,
    to_json,
)
from common.transfer.fetch import MAX_METADATA_BYTES, join_url
from common.transfer.http import Answer, parse_retry_after, request_bounded, translate_error
from common.transfer.retry import RetryPolicy, retrying

log = get_logger("rack.region")

SNAPSHOT_HEADER = "X-Bootsync-Snapshot"
_API_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=10, sock_read=60)
# Three missed keepalives mean the connection is dead (a half-open TCP session).
_EVENTS_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=3 * KEEPALIVE_S)
_API_BODY_MAX = 1 << 20
# Events are a name and a small JSON object: far below these bounds.
MAX_EVENT_LINE_BYTES = 64 << 10
MAX_EVENT_BYTES = 256 << 10
# Each try already went round every region URL: a ConnectError means all are down,
# and the link reconnects on its own schedule.
_DOCUMENT_RETRIES = RetryPolicy(retries=2, backoff_base=0.5, backoff_max=5.0, retry_connect=False)


class RegistrationRefusedError(UpstreamError):
    """The region refused the shared secret (HTTP 401), or this rack's own credential (403).

    ``detail`` is the region's own words for a 403 (why, and what to do).
    """

    reason = "registration_refused"

    def __init__(self, status: int, *, url: str, detail: str = "") -> None:
        self.status = status
        self.credential_refused = status == 403
        why = (
            detail or "the region refused this rack's own credential"
            if self.credential_refused
            else "the region refused this rack's shared secret"
        )
        super().__init__(f"HTTP {status}: {why}", url=url)


class RegistrationFailedError(UpstreamError):
    """The region answered the registration in a way retrying will not change: a 4xx other
    than 401/403, a TLS failure, or a reply no bootsync region sends. Needs an operator."""

    reason = "registration_failed"


class EventStreamError(UpstreamError):
    """The region's event stream broke a bound (a line or an event too long) or the protocol.

    Not retryable as such: the link hangs up, logs it and reconnects with backoff.
    """

    reason = "bad_event_stream"


_BASE_URL_HINT = (
    "is it a bootsync region? give the region's base URL, e.g. http://host:5240 "
    "(…/MAAS/ may be added)"
)


@dataclass(frozen=True)
class StreamDocument:
    """A file of the region's stream with the headers a rack cares about."""

    url: str
    body: bytes
    etag: str | None
    snapshot: str | None  # X-Bootsync-Snapshot: the region snapshot it came from


@dataclass(frozen=True)
class RegionEvent:
    """One server-sent event: ``snapshot`` or ``import`` (others are passed on too)."""

    name: str
    data: Mapping[str, Any]


class RegionClient:
    """Calls to the region at ``urls`` (rotating on connect failures) with ``secret``."""

    def __init__(self, session: aiohttp.ClientSession, urls: Sequence[str], secret: str) -> None:
        if not urls:
            raise ValueError("at least one region URL is needed")
        self._session = session
        self._urls = [url.rstrip("/") for url in urls]
        self._current = 0
        self._auth = {"Authorization": f"{AUTH_SCHEME} {secret}"}

    @property
    def base_url(self) -> str:
        """The region URL calls go to now."""
        return self._urls[self._current]

    def rotate(self) -> None:
        """Use the next configured region URL from now on."""
        if len(self._urls) > 1:
            previous = self.base_url
            self._current = (self._current + 1) % len(self._urls)
            log.info("region_url_rotated", previous=previous, url=self.base_url)

    def stream_url(self, path: str) -> str:
        """The URL of ``path`` (stream-relative) in the region's published stream."""
        return join_url(self.base_url + STREAM_PREFIX, path)

    def _headers(self, credential: str | None) -> dict[str, str]:
        """The shared secret, and the rack's own credential when it holds one."""
        return {**self._auth, CREDENTIAL_HEADER: credential} if credential else dict(self._auth)

    async def register(
        self, registration: Registration, *, credential: str | None = None
    ) -> RegistrationReply:
        """Register (or re-register) this rack; raise RegistrationRefusedError on a bad secret.

        Failures retrying will not fix raise RegistrationFailedError: any other
        4xx, a TLS handshake that fails, a reply that is not a RegistrationReply.
        Others raise ConnectError or HTTPStatusError (5xx, 429).
        """
        try:
            answer = await self._call(
                "POST",
                REGISTER_PATH,
                json_body=to_json(registration),
                headers=self._headers(credential),
            )
        except ConnectError as exc:
            raise _tls_failure(exc) or exc from exc
        except OversizeError as exc:
            raise RegistrationFailedError(
                f"not a bootsync region: the registration reply is over {_API_BODY_MAX} bytes",
                url=exc.url,
            ) from exc
        try:
            _check_api(answer)
        except HTTPStatusError as exc:
            if is_retryable(exc):
                raise
            raise RegistrationFailedError(
                f"HTTP {exc.status} for the registration: {_BASE_URL_HINT}", url=answer.url
            ) from exc
        return _parse_reply(answer)

    async def probe(self, url: str) -> str | None:
        """Why this rack could not register with the region at ``url``, or None if it could.

        Registers nothing: the probe is a registration the region must refuse
        (an empty body). The region checks the secret first, so a 400 naming a
        field proves a bootsync region that takes this rack's secret.
        """
        target = url.rstrip("/") + REGISTER_PATH
        try:
            answer = await request_bounded(
                self._session,
                "POST",
                target,
                max_bytes=_API_BODY_MAX,
                limits=_API_TIMEOUT,
                headers=self._auth,
                json_body={},
            )
        except ConnectError as exc:
            return str(_tls_failure(exc) or exc)
        except (UpstreamError, OversizeError) as exc:
            return str(exc)
        if answer.status in (401, 403):
            return str(RegistrationRefusedError(answer.status, url=target))
        if answer.status == 400 and _names_fields(answer.body):
            return None
        if 200 <= answer.status < 300:
            return f"{target}: not a bootsync region: it accepted an empty registration"
        return f"{target}: HTTP {answer.status} for the registration: {_BASE_URL_HINT}"

    async def report(
        self, system_id: str, status: RackStatus, *, credential: str | None = None
    ) -> None:
        """Send ``status`` to the region; errors as for :meth:`register` (404: unknown rack).

        ``credential`` is the rack's own (see :meth:`register`'s reply).
        """
        try:
            answer = await self._call(
                "POST",
                STATUS_PATH.format(system_id=system_id),
                json_body=to_json(status),
                headers=self._headers(credential),
            )
        except OversizeError as exc:
            raise UpstreamError(f"status reply over {_API_BODY_MAX} bytes", url=exc.url) from exc
        _check_api(answer)

    async def listen(
        self,
        system_id: str,
        on_event: Callable[[RegionEvent], None],
        *,
        credential: str | None = None,
    ) -> None:
        """Hold the region's event stream open, calling ``on_event`` for each event.

        Returns when the region ends the stream; raises as :meth:`register`
        does, StallError when keepalives stop arriving, and EventStreamError for
        a line over :data:`MAX_EVENT_LINE_BYTES`, an event over
        :data:`MAX_EVENT_BYTES`, or a body that is not HTTP.
        """
        url = self.base_url + EVENTS_PATH.format(system_id=system_id)
        headers = {**self._headers(credential), "Accept": "text/event-stream"}
        try:
            async with self._session.get(url, headers=headers, timeout=_EVENTS_TIMEOUT) as resp:
                if resp.status != 200:
                    _check_api(Answer(url=url, status=resp.status, headers=resp.headers, body=b""))
                    raise HTTPStatusError(resp.status, url=url)
                await _read_events(resp, on_event, url=url)
        except LineTooLong as exc:
            raise EventStreamError(
                f"an event line over {MAX_EVENT_LINE_BYTES} bytes: hung up", url=url
            ) from exc
        except HttpProcessingError as exc:
            raise EventStreamError(f"not an event stream: {exc!r}", url=url) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise translate_error(exc, url=url, body_started=False) from exc

    async def get_index(self, etag: str | None) -> StreamDocument | None:
        """GET the signed index, conditionally on ``etag``; None when it is unchanged (304)."""
        headers = {"If-None-Match": etag} if etag else {}
        return await self._get_stream(STREAM_INDEX, headers, allow_not_modified=True)

    async def get_document(self, path: str) -> StreamDocument:
        """GET a (small) stream document at the stream-relative ``path``.

        Retryable failures (a body cut off, 5xx, 429) are retried; a ConnectError
        (every region URL is down) is raised at once.
        """
        document = await self._get_stream(
            join_url(STREAM_PREFIX, path), {}, allow_not_modified=False
        )
        assert document is not None
        return document

    async def _get_stream(
        self, path: str, headers: dict[str, str], *, allow_not_modified: bool
    ) -> StreamDocument | None:
        async def attempt() -> Answer:
            answer = await self._call(
                "GET", path, headers=headers, limit=MAX_METADATA_BYTES, limits=_STREAM_TIMEOUT
            )
            if answer.status != 200 and not (answer.status == 304 and allow_not_modified):
                raise HTTPStatusError(
                    answer.status,
                    url=answer.url,
                    retry_after=parse_retry_after(answer.headers.get("Retry-After")),
                )
            return answer

        answer = await retrying(
            attempt, _DOCUMENT_RETRIES, log=log.bind(path=path), event="stream_fetch_retrying"
        )
        if answer.status == 304:
            return None
        return StreamDocument(
            url=answer.url,
            body=answer.body,
            etag=answer.headers.get("ETag"),
            snapshot=answer.headers.get(SNAPSHOT_HEADER),
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: object = None,
        headers: Mapping[str, str],
        limit: int = _API_BODY_MAX,
        limits: aiohttp.ClientTimeout = _API_TIMEOUT,
    ) -> Answer:
        """One request, trying each region URL once while connecting fails."""
        for tried in range(1, len(self._urls) + 1):
            url = self.base_url + path
            try:
                return await request_bounded(
                    self._session,
                    method,
                    url,
                    max_bytes=limit,
                    limits=limits,
                    headers=headers,
                    json_body=json_body,
                )
            except ConnectError as error:
                if tried == len(self._urls):
                    raise
                log.debug("region_url_unreachable", url=url, error=str(error))
                self.rotate()
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def _read_events(
    resp: aiohttp.ClientResponse, on_event: Callable[[RegionEvent], None], *, url: str
) -> None:
    """Parse a text/event-stream body (event and data fields; comments are keepalives).

    A line over :data:`MAX_EVENT_LINE_BYTES` raises LineTooLong (aiohttp's), an
    event over :data:`MAX_EVENT_BYTES` EventStreamError: nothing the region
    sends is held without bound.
    """
    name, data, size = "message", list[str](), 0
    while raw := await resp.content.readline(max_line_length=MAX_EVENT_LINE_BYTES):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data or name != "message":
                on_event(RegionEvent(name=name, data=_json_object("\n".join(data))))
            name, data, size = "message", list[str](), 0
            continue
        size += len(raw)
        if size > MAX_EVENT_BYTES:
            raise EventStreamError(f"an event over {MAX_EVENT_BYTES} bytes: hung up", url=url)
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)


def _tls_failure(exc: ConnectError) -> RegistrationFailedError | None:
    """``exc`` as a failed TLS handshake (an operator must fix it), or None."""
    if isinstance(exc.__cause__, aiohttp.ClientSSLError | ssl.SSLError):
        return RegistrationFailedError(f"TLS handshake failed: {exc.__cause__}", url=exc.url)
    return None


def _names_fields(body: bytes) -> bool:
    """True for a 400 body as the region words it: ``{field: [message, ...]}``."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in data.values())
    )


def _json_object(text: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}


def _check_api(answer: Answer) -> None:
    if answer.status in (401, 403):
        detail = answer.body[:1000].decode("utf-8", errors="replace").strip()
        raise RegistrationRefusedError(answer.status, url=answer.url, detail=detail)
    if not 200 <= answer.status < 300:
        raise HTTPStatusError(
            answer.status,
            url=answer.url,
            retry_after=parse_retry_after(answer.headers.get("Retry-After")),
        )


def _parse_reply(answer: Answer) -> RegistrationReply:
    try:
        data = json.loads(answer.body)
    except ValueError as exc:
        raise RegistrationFailedError(
            f"not a bootsync region: the registration reply is not JSON ({_BASE_URL_HINT})",
            url=answer.url,
        ) from exc
    fields = ("system_id", "region_keyring", "region_fingerprint")
    if not isinstance(data, dict) or not all(
        isinstance(data.get(f), str) and data[f] for f in fields
    ):
        raise RegistrationFailedError(
            f"not a bootsync region: the registration reply lacks one of {', '.join(fields)}",
            url=answer.url,
        )
    extra = (
        {"stream_index": data["stream_index"]} if isinstance(data.get("stream_index"), str) else {}
    )
    credential = data.get("credential")
    return RegistrationReply(
        system_id=data["system_id"],
        region_keyring=data["region_keyring"],
        region_fingerprint=data["region_fingerprint"],
        credential=credential if isinstance(credential, str) and credential else None,
        **extra,
    )
