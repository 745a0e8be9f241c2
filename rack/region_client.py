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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from common.errors import ConnectError, HTTPStatusError, UpstreamError
from common.ops.logging import get_logger
from common.rackproto import (
    AUTH_SCHEME,
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
# Each try already went round every region URL: a ConnectError means all are down,
# and the link reconnects on its own schedule.
_DOCUMENT_RETRIES = RetryPolicy(retries=2, backoff_base=0.5, backoff_max=5.0, retry_connect=False)


class RegistrationRefusedError(UpstreamError):
    """The region refused the shared secret (HTTP 401 or 403)."""

    reason = "registration_refused"

    def __init__(self, status: int, *, url: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: the region refused this rack's shared secret", url=url)


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

    async def register(self, registration: Registration) -> RegistrationReply:
        """Register (or re-register) this rack; raise RegistrationRefusedError on a bad secret.

        Other failures raise ConnectError, HTTPStatusError or UpstreamError (a
        reply that is not a RegistrationReply).
        """
        answer = await self._call(
            "POST", REGISTER_PATH, json_body=to_json(registration), headers=self._auth
        )
        _check_api(answer)
        return _parse_reply(answer)

    async def report(self, system_id: str, status: RackStatus) -> None:
        """Send ``status`` to the region; errors as for :meth:`register` (404: unknown rack)."""
        answer = await self._call(
            "POST",
            STATUS_PATH.format(system_id=system_id),
            json_body=to_json(status),
            headers=self._auth,
        )
        _check_api(answer)

    async def listen(self, system_id: str, on_event: Callable[[RegionEvent], None]) -> None:
        """Hold the region's event stream open, calling ``on_event`` for each event.

        Returns when the region ends the stream; raises as :meth:`register`
        does, and StallError when keepalives stop arriving.
        """
        url = self.base_url + EVENTS_PATH.format(system_id=system_id)
        headers = {**self._auth, "Accept": "text/event-stream"}
        try:
            async with self._session.get(url, headers=headers, timeout=_EVENTS_TIMEOUT) as resp:
                if resp.status != 200:
                    _check_api(Answer(url=url, status=resp.status, headers=resp.headers, body=b""))
                    raise HTTPStatusError(resp.status, url=url)
                await _read_events(resp, on_event)
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
    resp: aiohttp.ClientResponse, on_event: Callable[[RegionEvent], None]
) -> None:
    """Parse a text/event-stream body (event and data fields; comments are keepalives)."""
    name, data = "message", list[str]()
    async for raw in resp.content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data or name != "message":
                on_event(RegionEvent(name=name, data=_json_object("\n".join(data))))
            name, data = "message", list[str]()
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)


def _json_object(text: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}


def _check_api(answer: Answer) -> None:
    if answer.status in (401, 403):
        raise RegistrationRefusedError(answer.status, url=answer.url)
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
        raise UpstreamError("registration reply is not JSON", url=answer.url) from exc
    fields = ("system_id", "region_keyring", "region_fingerprint")
    if not isinstance(data, dict) or not all(
        isinstance(data.get(f), str) and data[f] for f in fields
    ):
        raise UpstreamError(f"registration reply lacks one of {', '.join(fields)}", url=answer.url)
    extra = (
        {"stream_index": data["stream_index"]} if isinstance(data.get("stream_index"), str) else {}
    )
    return RegistrationReply(
        system_id=data["system_id"],
        region_keyring=data["region_keyring"],
        region_fingerprint=data["region_fingerprint"],
        **extra,
    )
