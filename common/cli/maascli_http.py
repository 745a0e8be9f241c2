"""Sending maas-CLI requests: OAuth PLAINTEXT, multipart bodies, and printing answers.

Requests are built as the maas CLI builds them: ``op`` in the query string;
GET/DELETE arguments in the query; POST/PUT arguments as a multipart body of
base64 parts (no body at all when there are none); files as parts whose
filename is the field name. The URL is the profile's scheme and host plus the
handler's ``path``. Answers: 2xx bodies go to stdout (JSON pretty-printed),
anything else prints ``HTTP <status> <reason>: <message>`` on stderr and
exits 2, as the maas CLI does.

:class:`ApiClient` sends one request at a time with the standard library
(``http.client``, :mod:`common.cli.maascli_wire`): a CLI call waits for its
answer anyway, and neither module imports anything heavy, so ``bootsync PROFILE COMMAND ACTION`` starts fast
(tests/unit/cli/test_startup_imports.py). Long-running work (chunked uploads,
watching an import) uses :class:`common.cli.maascli_aio.AsyncApiClient`, which
builds the same requests and reports failures in the same words.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import client as http_client
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from common.cli.maascli_commands import Invocation
from common.cli.maascli_wire import ACCEPT_ENCODING, exchange, ssl_context
from common.errors import BootsyncError, ConnectError
from common.version import user_agent

USER_AGENT = user_agent("bootsync-cli")
API_ERROR_EXIT = 2
# What yarl (aiohttp's URLs) leaves unquoted in a query value: the same query string.
_QUERY_SAFE = "?/:@!$'()*,"

if TYPE_CHECKING:
    import ssl


class ApiFileError(BootsyncError):
    """A ``key@=file`` argument names a file that cannot be read."""


@dataclass(frozen=True)
class Credentials:
    """An API key, ``consumer_key:token_key:token_secret``."""

    consumer_key: str
    token_key: str
    token_secret: str

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """Split a key; ValueError unless it has exactly three non-empty parts."""
        parts = text.strip().split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError("an API key has three parts: consumer_key:token_key:token_secret")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.consumer_key}:{self.token_key}:{self.token_secret}"


@dataclass(frozen=True)
class Part:
    """One multipart field; ``filename`` set makes it a file part."""

    name: str
    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class ApiResponse:
    """A finished exchange: status, reason, media type and the whole body."""

    method: str
    url: str
    status: int
    reason: str
    content_type: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed as JSON; ValueError if it is not JSON."""
        return json.loads(self.body.decode("utf-8"))


def api_url(url: str) -> str:
    """``http://h:5240/MAAS`` → ``http://h:5240/MAAS/api/2.0/`` (a path ending in
    ``/api/<version>/`` is kept). ValueError for a URL without scheme and host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    segments = path.rstrip("/").split("/")
    if not (
        len(segments) >= 2 and segments[-2] == "api" and segments[-1].replace(".", "").isdigit()
    ):
        path += "api/2.0/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def oauth_header(credentials: Credentials) -> str:
    """``Authorization`` value for OAuth 1.0 PLAINTEXT, as the maas CLI signs (no realm)."""
    params = (
        ("oauth_nonce", str(_random_bits(64))),
        ("oauth_timestamp", str(int(time.time()))),
        ("oauth_version", "1.0"),
        ("oauth_signature_method", "PLAINTEXT"),
        ("oauth_consumer_key", credentials.consumer_key),
        ("oauth_token", credentials.token_key),
        ("oauth_signature", "&" + credentials.token_secret),
    )
    return "OAuth " + ", ".join(f'{k}="{quote(v, safe="~")}"' for k, v in params)


def encode_multipart(parts: Sequence[Part], *, boundary: str | None = None) -> tuple[str, bytes]:
    """(Content-Type, body) of a ``multipart/form-data`` body of base64 parts.

    Text parts are ``text/plain; charset="utf-8"``, file parts
    ``application/octet-stream`` with ``filename`` = the field name's file.
    """
    marker = boundary or f"==============={_random_bits(63):019d}=="
    out = bytearray()
    for part in parts:
        disposition = f'form-data; name="{_quoted(part.name)}"'
        if part.filename is not None:
            disposition += f'; filename="{_quoted(part.filename)}"'
            ctype = "application/octet-stream"
        else:
            ctype = 'text/plain; charset="utf-8"'
        out += (
            f"--{marker}\r\nContent-Type: {ctype}\r\nMIME-Version: 1.0\r\n"
            f"Content-Transfer-Encoding: base64\r\nContent-Disposition: {disposition}\r\n"
            "\r\n"
        ).encode()
        encoded = base64.b64encode(part.data)
        out += b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        out += b"\r\n"
    out += f"--{marker}--\r\n".encode()
    return f'multipart/form-data; boundary="{marker}"', bytes(out)


def _random_bits(bits: int) -> int:
    """``secrets.randbits(bits)`` (os.urandom) without importing secrets, random and hashlib."""
    return int.from_bytes(os.urandom((bits + 7) // 8), "big") >> (-bits % 8)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")


@dataclass(frozen=True)
class PreparedRequest:
    """What goes on the wire: method, URL without query, query, headers and body."""

    method: str
    url: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes | None

    @property
    def full_url(self) -> str:
        """The URL with the query string (``op`` first, then GET/DELETE arguments)."""
        if not self.query:
            return self.url
        return (
            self.url + ("&" if "?" in self.url else "?") + urlencode(self.query, safe=_QUERY_SAFE)
        )


def connect_error(exc: BaseException, url: str) -> ConnectError:
    """The ConnectError a transport failure of ``url`` becomes, for either client."""
    return ConnectError(f"cannot reach the server: {exc or type(exc).__name__}", url=url)


class ClientBase:
    """What both clients share: URLs, building requests, ``--debug`` traces, the hash check."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None,
        *,
        insecure: bool = False,
        debug: TextIO | None = None,
        api_hash: str | None = None,
        warn: TextIO | None = None,
    ) -> None:
        self.base_url = base_url
        self.credentials = credentials
        self._insecure = insecure
        self._debug = debug
        self._api_hash = api_hash
        self._warn = warn if warn is not None else sys.stderr
        self._warned = False

    def url_for(self, path: str) -> str:
        """The profile's scheme and host joined to an absolute ``path``."""
        base = urlsplit(self.base_url)
        return urlunsplit((base.scheme, base.netloc, path, "", ""))

    def handler_url(self, invocation: Invocation) -> str:
        """The action's URL: the handler ``path`` (or ``uri``) with the URI params filled in."""
        command = invocation.command
        values = {k: quote(v, safe="") for k, v in invocation.uri_params.items()}
        if command.path:
            return self.url_for(command.path.format_map(values))
        uri = urlsplit(command.uri.format_map(values))
        return urlunsplit((urlsplit(self.base_url).scheme, uri.netloc, uri.path, "", ""))

    def prepare(
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
    ) -> PreparedRequest:
        """The request as the maas CLI builds it; ``raw`` sends those bytes as the body."""
        query: list[tuple[str, str]] = [("op", op)] if op else []
        headers: dict[str, str] = {}
        body: bytes | None = raw
        if raw is not None:
            headers["Content-Type"] = raw_type or "application/octet-stream"
        elif method in ("GET", "DELETE"):
            query += list(fields)
            query += [(name, data.decode("utf-8", errors="replace")) for name, data in files]
        elif fields or files:
            parts = [Part(name, value.encode()) for name, value in fields]
            parts += [Part(name, data, filename=name) for name, data in files]
            headers["Content-Type"], body = encode_multipart(parts)
        if signed and self.credentials is not None:
            headers["Authorization"] = oauth_header(self.credentials)
        self._trace(f"> {method} {url} {query or ''}")
        return PreparedRequest(method, url, query, headers, body)

    def _received(self, response: ApiResponse) -> ApiResponse:
        self._trace(
            f"< {response.status} {response.reason}\n"
            + "\n".join(f"< {k}: {v}" for k, v in response.headers.items())
        )
        self._check_hash(response)
        return response

    def _trace(self, text: str) -> None:
        if self._debug is not None:
            print(text, file=self._debug)

    def _check_hash(self, response: ApiResponse) -> None:
        served = response.headers.get("X-MAAS-API-Hash")
        if self._warned or not served or not self._api_hash or served == self._api_hash:
            return
        self._warned = True
        print(
            "warning: the API on the server differs from the description stored for this "
            "profile; run 'bootsync refresh'.",
            file=self._warn,
        )


class ApiClient(ClientBase):
    """One profile's requests, one connection each, synchronous; use ``with``.

    Transport failures raise ConnectError. Honours ``*_proxy``/``no_proxy`` and
    ``~/.netrc`` (unsigned requests) as the aiohttp session did (``trust_env``),
    follows no redirect, and verifies TLS with the system's CA paths
    (``SSL_CERT_FILE``/``SSL_CERT_DIR``) unless ``insecure``.
    """

    _context: ssl.SSLContext | None = None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def call(self, invocation: Invocation) -> ApiResponse:
        """Send the invocation as the maas CLI would. Raises ApiFileError, ConnectError."""
        files = [(name, read_file(path)) for name, path in invocation.files]
        return self.request(
            invocation.action.method,
            self.handler_url(invocation),
            op=invocation.action.op,
            fields=invocation.data,
            files=files,
        )

    def request(
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
        prepared = self.prepare(
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
            response = self._exchange(prepared)
        except (OSError, http_client.HTTPException) as exc:
            raise connect_error(exc, url) from exc
        return self._received(response)

    def _exchange(self, req: PreparedRequest) -> ApiResponse:
        headers = {"Accept": "*/*", "Accept-Encoding": ACCEPT_ENCODING, "User-Agent": USER_AGENT}
        headers.update(req.headers)
        reply = exchange(req.method, req.full_url, headers, req.body, tls=self._ssl_context)
        return ApiResponse(
            method=req.method,
            url=req.full_url,
            status=reply.status,
            reason=reply.reason,
            content_type=reply.headers.get("Content-Type", ""),
            headers=reply.headers,
            body=reply.body,
        )

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl_context(insecure=self._insecure)
        return self._context


def read_file(path: Path) -> bytes:
    """The bytes of a ``key@=file`` argument (blocking); ApiFileError if unreadable."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ApiFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def media_type(content_type: str) -> str:
    """``application/json; charset=utf-8`` → ``application/json``."""
    return content_type.split(";", 1)[0].strip().lower()


def error_message(response: ApiResponse) -> str:
    """The server's message: JSON ``{field: [msgs]}`` as ``field: msg`` lines, or the text."""
    text = response.body.decode("utf-8", errors="replace").strip()
    if media_type(response.content_type) == "application/json":
        try:
            data = json.loads(text)
        except ValueError:
            return text
        if isinstance(data, dict):
            return "\n".join(
                f"{key}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for key, v in data.items()
            )
        return json.dumps(data)
    return text


def print_response(response: ApiResponse, *, out: TextIO, err: TextIO) -> int:
    """Print an answer: body on ``out`` for 2xx (exit 0), status and message on ``err`` (2)."""
    if not response.ok:
        message = error_message(response)
        print(
            f"HTTP {response.status} {response.reason}" + (f": {message}" if message else ""),
            file=err,
        )
        return API_ERROR_EXIT
    if not response.body:
        return 0
    kind = media_type(response.content_type)
    if kind == "application/json" or kind.endswith("+json"):
        try:
            print(json.dumps(response.json(), indent=4, ensure_ascii=False), file=out)
        except ValueError:
            pass
        else:
            return 0
    text = response.body.decode("utf-8", errors="replace")
    out.write(text if text.endswith("\n") else text + "\n")
    return 0
