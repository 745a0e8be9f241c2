"""The standard-library transport of the CLI's API calls (http.client, one connection each).

What the aiohttp session of :mod:`common.cli.maascli_aio` does for a request,
done synchronously and without importing aiohttp: ``*_proxy``/``no_proxy``
(``http://`` proxies, ``CONNECT`` for https), ``~/.netrc`` for requests sent
without ``Authorization``, TLS verified with the system's CA paths
(``SSL_CERT_FILE``/``SSL_CERT_DIR``) unless insecure, no redirects followed,
gzip/deflate bodies decoded, the same timeouts. Failures raise
:class:`TransportFailure` worded as aiohttp words them, so the CLI prints the
same ``cannot reach the server: ...`` message whichever client sent the request.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Callable, ItemsView, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import client as http_client
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import ssl

# The aiohttp client's settings (total=None, sock_connect=30, sock_read=300), kept
# by both clients: seconds to connect (TLS handshake included), and of silence.
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 300.0
# What aiohttp asks for and decodes; bodies are decoded here the same way.
ACCEPT_ENCODING = "gzip, deflate"


class Headers(Mapping[str, str]):
    """Response headers in the order received: lookups ignore case, ``items()`` keeps repeats."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._pairs = list(pairs)

    def __getitem__(self, name: str) -> str:
        wanted = name.lower()
        for key, value in self._pairs:
            if key.lower() == wanted:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, str] = {}
        for key, _ in self._pairs:
            seen.setdefault(key.lower(), key)
        return iter(seen.values())

    def __len__(self) -> int:
        return len({key.lower() for key, _ in self._pairs})

    def items(self) -> ItemsView[str, str]:
        return _AllItems(self, self._pairs)


class _AllItems(ItemsView[str, str]):
    def __init__(self, headers: Headers, pairs: list[tuple[str, str]]) -> None:
        super().__init__(headers)
        self._all = pairs

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)


class TransportFailure(OSError):
    """A request that got no (whole) answer; the message is worded as aiohttp words it."""


def cannot_connect(host: str, port: int, reason: object) -> str:
    """aiohttp's ``ClientConnectorError`` text: ``Cannot connect to host h:p ssl:default [...]``."""
    return f"Cannot connect to host {host}:{port} ssl:default [{reason}]"


@dataclass(frozen=True)
class Reply:
    """A whole answer: status, reason, headers and the (decoded) body."""

    status: int
    reason: str
    headers: Headers
    body: bytes


def exchange(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    tls: Callable[[], ssl.SSLContext],
) -> Reply:
    """Send one request to ``url`` (with its query) and read the answer.

    ``tls`` gives the context for an https URL. Raises TransportFailure, or
    another OSError / http.client.HTTPException for what aiohttp has no words for.
    """
    target = urlsplit(url)
    host = target.hostname or ""
    sent = dict(headers)
    if "Authorization" not in sent:
        basic = _netrc_authorization(host)
        if basic is not None:
            sent["Authorization"] = basic
    conn, path = _connection(url, sent, tls)
    try:
        conn.request(method, path, body=body, headers=sent)
        try:
            resp = conn.getresponse()
        except http_client.RemoteDisconnected as exc:
            raise TransportFailure("Server disconnected") from exc
        except TimeoutError as exc:
            raise TransportFailure("Timeout on reading data from socket") from exc
        try:
            data = resp.read()
        except http_client.IncompleteRead as exc:
            raise TransportFailure(_incomplete(exc, resp.getheader("Content-Length"))) from exc
        except TimeoutError as exc:
            raise TransportFailure("Timeout on reading data from socket") from exc
    finally:
        conn.close()
    received = Headers(resp.getheaders())
    return Reply(
        status=resp.status,
        reason=resp.reason or "",
        headers=received,
        body=_decoded(data, received.get("Content-Encoding", "")),
    )


def ssl_context(*, insecure: bool) -> ssl.SSLContext:
    """aiohttp's contexts: the system's default verified one, or one that checks nothing."""
    import ssl  # noqa: PLC0415 - only https needs it

    if not insecure:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _connection(
    url: str, headers: dict[str, str], tls: Callable[[], ssl.SSLContext]
) -> tuple[_Connection, str]:
    """The connection (direct, or through the environment's proxy) and the request target."""
    target = urlsplit(url)
    https = target.scheme == "https"
    host = target.hostname or ""
    port = target.port or (443 if https else 80)
    path = (target.path or "/") + (f"?{target.query}" if target.query else "")
    proxy = _env_proxy(target.scheme, host)
    if proxy is None:
        conn = _Connection(host, port, full_url=url)
    else:
        parts = urlsplit(proxy)
        conn = _Connection(parts.hostname or "", parts.port or 80, full_url=url)
        proxy_headers = {}
        if parts.username is not None:
            user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(user.encode("latin1")).decode()
            proxy_headers["Proxy-Authorization"] = f"Basic {token}"
        if https:
            conn.tunnel(host, port, proxy_headers)
        else:
            headers.update(proxy_headers)
            path = url
    if https:
        conn.tls(tls(), host)
    return conn, path


class _Connection(http_client.HTTPConnection):
    """An HTTP(S) connection that connects and fails as aiohttp's connector does."""

    def __init__(self, host: str, port: int, *, full_url: str) -> None:
        super().__init__(host, port, timeout=CONNECT_TIMEOUT)
        self._full_url = full_url
        self._tls: tuple[ssl.SSLContext, str] | None = None
        self._tunnelled_port: int | None = None

    def tunnel(self, host: str, port: int, headers: Mapping[str, str]) -> None:
        """Reach ``host:port`` through this (proxy) connection with ``CONNECT``."""
        self.set_tunnel(host, port, headers=dict(headers))
        self._tunnelled_port = port

    def tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Wrap the socket (after a proxy tunnel, if any) in TLS for ``server_hostname``."""
        self._tls = (context, server_hostname)

    def connect(self) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT
        try:
            self.sock = open_socket(self.host, self.port, deadline)
            if self._tunnelled_port is not None:
                self._tunnel()  # type: ignore[attr-defined]  # http.client's own CONNECT
            if self._tls is not None:
                context, name = self._tls
                self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                self.sock = self._handshake(context, name)
        except TimeoutError as exc:
            raise TransportFailure(f"Connection timeout to host {self._full_url}") from exc
        self.sock.settimeout(READ_TIMEOUT)

    def _handshake(self, context: ssl.SSLContext, name: str) -> socket.socket:
        import ssl  # noqa: PLC0415 - only https needs it

        port = self.port if self._tunnelled_port is None else self._tunnelled_port
        try:
            return context.wrap_socket(self.sock, server_hostname=name)
        except ssl.SSLCertVerificationError as exc:
            raise TransportFailure(
                f"Cannot connect to host {name}:{port} ssl:True [{type(exc).__name__}: {exc.args}]"
            ) from exc
        except ssl.SSLError as exc:
            raise TransportFailure(cannot_connect(name, port, exc.strerror)) from exc


def open_socket(host: str, port: int, deadline: float) -> socket.socket:
    """A socket connected to the first address of ``host`` that answers.

    Raises TransportFailure worded as aiohttp's (a name that does not resolve,
    every address refused), TimeoutError when ``deadline`` passes.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
    except socket.gaierror as exc:
        raise TransportFailure(cannot_connect(host, port, exc.strerror)) from exc
    errors: list[OSError] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(address)
        except TimeoutError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            # asyncio's words for a failed connect, which aiohttp passes on.
            errors.append(OSError(exc.errno, f"Connect call failed {address}"))
            continue
        return sock
    raise TransportFailure(cannot_connect(host, port, _combined(errors).strerror))


def _combined(errors: list[OSError]) -> OSError:
    """One error for every failed address, as aiohappyeyeballs combines them."""
    if not errors:
        return OSError(None, "no address")
    first = errors[0]
    if len(errors) == 1 or all(str(e) == str(first) for e in errors):
        return first
    message = "Multiple exceptions: " + ", ".join(str(e) for e in errors)
    if all(e.errno == first.errno for e in errors):
        return OSError(first.errno, message)
    return OSError(message)


def _incomplete(exc: http_client.IncompleteRead, content_length: str | None) -> str:
    """aiohttp's words for a body cut short."""
    if content_length:
        received = len(exc.partial)
        what = (
            "ContentLengthError",
            "content length header (received "
            f"{received} of {received + (exc.expected or 0)} bytes).",
        )
    else:
        what = ("TransferEncodingError", "transfer length header.")
    return (
        f"Response payload is not completed: <{what[0]}: 400, "
        f"message='Not enough data to satisfy {what[1]}'>"
    )


def _decoded(data: bytes, encoding: str) -> bytes:
    """The body with a gzip or deflate Content-Encoding undone, as aiohttp undoes it."""
    coding = encoding.strip().lower()
    if not data or coding not in ("gzip", "x-gzip", "deflate"):
        return data
    import zlib  # noqa: PLC0415 - only compressed answers need it

    try:
        if coding == "deflate":
            try:
                return zlib.decompress(data)
            except zlib.error:
                return zlib.decompress(data, -zlib.MAX_WBITS)
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise TransportFailure(f"Can not decode content-encoding: {coding}") from exc


def _env_proxy(scheme: str, host: str) -> str | None:
    """The ``http://`` proxy ``*_proxy`` names for this scheme and host (no_proxy applied)."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    import urllib.request  # noqa: PLC0415 - only when a proxy is configured

    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urlsplit(proxy).scheme != "http" or urllib.request.proxy_bypass(host):
        return None
    return proxy


def _netrc_authorization(host: str) -> str | None:
    """``Basic`` credentials ``$NETRC`` or ``~/.netrc`` holds for ``host``, if any."""
    path = Path(os.environ.get("NETRC") or Path("~/.netrc").expanduser())
    if not path.is_file():
        return None
    import netrc  # noqa: PLC0415 - only when there is such a file

    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    if entry is None:
        return None
    login, account, password = entry
    username = login if (login or account is None) else account
    token = base64.b64encode(f"{username}:{password or ''}".encode("latin1")).decode()
    return f"Basic {token}"
