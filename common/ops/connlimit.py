"""What one client may hold of a daemon's HTTP server: a header timeout and a connection cap.

Without them 1,000 idle or half-sent connections (slowloris) stay open for ever.

* **Header timeout.** aiohttp (the pinned 3.14) arms its keep-alive timer when a
  connection opens and again after each response, and closes the connection
  if no complete request line and headers have arrived when it fires. Its
  ``keepalive_timeout`` is therefore the time a client has to send a request
  head, on a new connection or between requests; a client that sends nothing,
  or a header byte now and then, is closed after it. A request being handled
  (a download, a rack's event stream) is not affected. :func:`make_runner`
  sets it; tests/unit/common/test_connlimit.py proves it on real sockets, so an
  aiohttp that stops doing so fails there.
* **Connections per client.** :class:`LimitedTCPSite` counts the connections
  open from each remote address; one more than ``per_client`` is answered
  ``503`` and closed at once (logged once per episode as
  ``client_connections_limited``), while other addresses are served as usual.
  Behind a reverse proxy every client has the proxy's address: raise the limit
  there, or set it to 0 (no limit).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from common.ops.logging import get_logger

log = get_logger("http.limits")

DEFAULT_HEADER_TIMEOUT_S = 10
MAX_HEADER_TIMEOUT_S = 600
DEFAULT_MAX_CLIENT_CONNECTIONS = 64
MAX_CLIENT_CONNECTIONS = 100_000

_REFUSAL_TEXT = b"Too many connections from your address; close some and try again.\n"
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_REFUSAL_TEXT)).encode() + b"\r\n"
    b"Connection: close\r\n"
    b"Retry-After: 10\r\n"
    b"\r\n" + _REFUSAL_TEXT
)
"""What a connection over the limit gets before it is closed."""


@dataclass(frozen=True)
class ConnectionLimits:
    """``header_timeout_s``: seconds to send a request head; ``per_client``: connections
    one remote address may hold open at once (0: no limit)."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    per_client: int = DEFAULT_MAX_CLIENT_CONNECTIONS


def make_runner(
    app: web.Application, limits: ConnectionLimits, *, shutdown_timeout: float
) -> web.AppRunner:
    """An AppRunner for ``app`` whose connections close ``limits.header_timeout_s`` after
    opening (or after a response) unless a complete request head arrived."""
    return web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=limits.header_timeout_s,
    )


class ClientCounter:
    """Open connections per remote address, against a cap (0: none)."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._open: dict[str, int] = {}
        self._limited: set[str] = set()

    def open(self, client: str) -> bool:
        """Count one more connection from ``client``; False (and it is not counted) if the
        cap is reached, logged once until ``client`` is under the cap again."""
        held = self._open.get(client, 0)
        if self.per_client and held >= self.per_client:
            if client not in self._limited:
                self._limited.add(client)
                log.warning("client_connections_limited", remote=client, limit=self.per_client)
            return False
        self._open[client] = held + 1
        return True

    def close(self, client: str) -> None:
        """One connection from ``client`` ended."""
        held = self._open.get(client, 0) - 1
        if held > 0:
            self._open[client] = held
        else:
            self._open.pop(client, None)
        if held < self.per_client:
            self._limited.discard(client)

    def held(self, client: str) -> int:
        """Connections open from ``client`` now."""
        return self._open.get(client, 0)


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted per client (or refused at once)."""

    def __init__(self, inner: asyncio.Protocol, counter: ClientCounter) -> None:
        self._inner = inner
        self._counter = counter
        self._client: str | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else None
        if client is not None:
            if not self._counter.open(client):
                self._refused = True
                writer = cast(asyncio.WriteTransport, transport)  # uvloop's is no subclass
                writer.write(REFUSAL)
                writer.close()
                return
            self._client = client
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._refused else self._inner.eof_received()

    def pause_writing(self) -> None:
        if not self._refused:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if not self._refused:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        if self._client is not None:
            self._counter.close(self._client)
        self._inner.connection_lost(exc)


class LimitedTCPSite(web.BaseSite):
    """aiohttp's TCPSite, with each connection counted against ``per_client`` per address."""

    __slots__ = ("_bound_port", "_host", "_port", "counter")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, per_client: int, backlog: int = 128
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._bound_port: int | None = None
        self.counter = ClientCounter(per_client)

    @property
    def name(self) -> str:
        """``http://host:port`` (what aiohttp prints for a site)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def port(self) -> int:
        """The port bound (the one asked for until started; useful with port 0)."""
        return self._bound_port if self._bound_port is not None else self._port

    async def start(self) -> None:
        """Listen; raises OSError when the address cannot be bound."""
        await super().start()
        server = self._runner.server
        assert server is not None

        def counted() -> asyncio.Protocol:
            return _Counted(server(), self.counter)

        loop = asyncio.get_running_loop()
        listening = await loop.create_server(counted, self._host, self._port, backlog=self._backlog)
        self._server = listening
        sockets: Any = listening.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


async def start_site(
    runner: web.BaseRunner, host: str, port: int, limits: ConnectionLimits, *, backlog: int
) -> LimitedTCPSite:
    """Listen on ``host:port`` for ``runner`` (set up) with ``limits``; OSError if taken."""
    site = LimitedTCPSite(runner, host, port, per_client=limits.per_client, backlog=backlog)
    await site.start()
    return site
