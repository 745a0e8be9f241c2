"""The maas-CLI client on aiohttp, for long-running work: chunked uploads, watching imports.

Requests are built by :class:`common.cli.maascli_http.ClientBase`, as the
standard-library :class:`~common.cli.maascli_http.ApiClient` builds them, and
transport failures become the same ConnectError. Only the commands that need an
event loop import this module (and aiohttp with it).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import aiohttp

from common.cli.maascli_commands import Invocation
from common.cli.maascli_http import USER_AGENT, ApiResponse, ClientBase, connect_error
from common.cli.maascli_http import read_file as read_file_blocking
from common.cli.maascli_wire import CONNECT_TIMEOUT, READ_TIMEOUT


class AsyncApiClient(ClientBase):
    """One profile's HTTP session; use ``async with``. Transport failures raise ConnectError."""

    _session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncApiClient:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT},
            trust_env=True,
            connector=aiohttp.TCPConnector(ssl=not self._insecure),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
            ),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, invocation: Invocation) -> ApiResponse:
        """Send the invocation as the maas CLI would. Raises ApiFileError, ConnectError."""
        files = [(name, await read_file(path)) for name, path in invocation.files]
        return await self.request(
            invocation.action.method,
            self.handler_url(invocation),
            op=invocation.action.op,
            fields=invocation.data,
            files=files,
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        op: str | None = None,
        fields: Sequence[tuple[str, str]] = (),
        files: Sequence[tuple[str, bytes]] = (),
        signed: bool = True,
        raw: bytes | None = None,
        raw_type: str | None = None,
    ) -> ApiResponse:
        """One request; ``raw`` sends those bytes as the body instead of fields/files."""
        assert self._session is not None, "use AsyncApiClient in 'async with'"
        req = self.prepare(
            method,
            url,
            op=op,
            fields=fields,
            files=files,
            signed=signed,
            raw=raw,
            raw_type=raw_type,
        )
        try:
            # No body, no Content-Type: as the maas CLI sends ``import``.
            skip = () if req.body is not None else ("Content-Type",)
            # A BytesIO payload: aiohttp warns that large raw bytes may stall the loop.
            payload = None if req.body is None else io.BytesIO(req.body)
            async with self._session.request(
                method,
                url,
                params=req.query or None,
                data=payload,
                headers=req.headers,
                skip_auto_headers=skip,
                allow_redirects=False,
            ) as resp:
                data = await resp.read()
                response = ApiResponse(
                    method=method,
                    url=str(resp.url),
                    status=resp.status,
                    reason=resp.reason or "",
                    content_type=resp.headers.get("Content-Type", ""),
                    headers=resp.headers,
                    body=data,
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise connect_error(exc, url) from exc
        return self._received(response)


async def read_file(path: Path) -> bytes:
    """The bytes of a ``key@=file`` argument, read off the loop; ApiFileError if unreadable."""
    return await asyncio.to_thread(read_file_blocking, path)
