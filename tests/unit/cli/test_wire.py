"""The standard-library client fails, and answers, in the same words as the aiohttp client.

Each case sends the same request with :class:`ApiClient` (http.client, run in a
thread so the test servers keep running on the loop) and with
:class:`AsyncApiClient` (aiohttp) against real servers on 127.0.0.1, and
compares what the CLI would print.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.cli.maascli_aio import AsyncApiClient
from common.cli.maascli_http import ApiClient, ApiResponse
from common.errors import ConnectError

ServerFactory = Callable[..., Awaitable[TestServer]]
Outcome = tuple[str, ...]


def _sync_outcome(url: str, insecure: bool) -> Outcome:
    with ApiClient(url, None, insecure=insecure) as client:
        try:
            return _answer(client.request("GET", url + "describe/"))
        except ConnectError as exc:
            return ("error", str(exc))


async def _aio_outcome(url: str, insecure: bool) -> Outcome:
    async with AsyncApiClient(url, None, insecure=insecure) as client:
        try:
            return _answer(await client.request("GET", url + "describe/"))
        except ConnectError as exc:
            return ("error", str(exc))


def _answer(response: ApiResponse) -> Outcome:
    headers = [f"{k}: {v}" for k, v in response.headers.items() if k.lower() != "date"]
    return (
        str(response.status),
        response.reason,
        response.content_type,
        response.body.decode(),
        *headers,
    )


async def _both(url: str, *, insecure: bool = False) -> tuple[Outcome, Outcome]:
    ours = await asyncio.to_thread(_sync_outcome, url, insecure)
    return ours, await _aio_outcome(url, insecure)


async def _raw_server(reply: bytes) -> AsyncIterator[str]:
    """A TCP server that reads the request head, writes ``reply`` and hangs up."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/MAAS/api/2.0/"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def hangs_up() -> AsyncIterator[str]:
    async for url in _raw_server(b""):
        yield url


@pytest.fixture
async def cuts_body() -> AsyncIterator[str]:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    async for url in _raw_server(head + b'{"a":'):
        yield url


async def _answers(request: web.Request) -> web.StreamResponse:
    if request.path.startswith("/gone/"):
        raise web.HTTPFound("/elsewhere/", headers={"X-Seen": "1"})
    if request.path.startswith("/zipped/"):
        body = gzip.compress(b'{"zipped": true}')
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=body, headers=headers)
    response = web.json_response({"path": request.path}, status=400)
    response.headers.add("X-Twice", "a")
    response.headers.add("x-twice", "b")
    return response


@pytest.fixture
async def server(aiohttp_server: ServerFactory) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _answers)
    return await aiohttp_server(app)


@pytest.fixture
async def tls_server(aiohttp_server: ServerFactory, tmp_path: Path) -> TestServer:
    """An https server with a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await asyncio.to_thread(
        subprocess.run,
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    await asyncio.to_thread(context.load_cert_chain, cert, key)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _answers)
    return await aiohttp_server(app, ssl=context)


async def test_refused_and_unresolvable_hosts_read_the_same(unused_tcp_port: int) -> None:
    """Connection refused and an unknown host name give aiohttp's message, word for word."""
    for url in (
        f"http://127.0.0.1:{unused_tcp_port}/MAAS/api/2.0/",
        f"http://localhost:{unused_tcp_port}/MAAS/api/2.0/",
        "http://bootsync-test.invalid/MAAS/api/2.0/",
    ):
        ours, theirs = await _both(url)
        assert ours == theirs
        assert ours[0] == "error"
        assert "cannot reach the server: Cannot connect to host" in ours[1]


async def test_a_server_that_hangs_up_reads_the_same(hangs_up: str) -> None:
    """No answer at all is "Server disconnected", as aiohttp says it."""
    ours, theirs = await _both(hangs_up)
    assert (
        ours
        == theirs
        == ("error", f"{hangs_up}describe/: cannot reach the server: Server disconnected")
    )


async def test_a_cut_body_reads_the_same(cuts_body: str) -> None:
    """A body shorter than its Content-Length is reported with aiohttp's payload message."""
    ours, theirs = await _both(cuts_body)
    assert ours == theirs
    assert "received 5 of 100 bytes" in ours[1]


async def test_errors_redirects_and_gzip_answer_the_same(server: TestServer) -> None:
    """A 400 with repeated headers, an unfollowed 302 and a gzip body come back alike."""
    for path in ("/MAAS/api/2.0/", "/gone/", "/zipped/"):
        ours, theirs = await _both(str(server.make_url(path)))
        assert ours == theirs
    bad, _ = await _both(str(server.make_url("/MAAS/api/2.0/")))
    assert bad[:2] == ("400", "Bad Request")
    assert [h for h in bad if h.lower().startswith("x-twice")] == ["X-Twice: a", "x-twice: b"]
    moved, _ = await _both(str(server.make_url("/gone/")))
    assert moved[:2] == ("302", "Found")
    zipped, _ = await _both(str(server.make_url("/zipped/")))
    assert zipped[3] == '{"zipped": true}'


async def test_tls_is_verified_unless_insecure(tls_server: TestServer) -> None:
    """A self-signed certificate fails verification in aiohttp's words; --insecure accepts it."""
    url = str(tls_server.make_url("/MAAS/api/2.0/"))
    assert url.startswith("https://")
    ours, theirs = await _both(url)
    assert ours == theirs
    assert "ssl:True [SSLCertVerificationError:" in ours[1]
    ours, theirs = await _both(url, insecure=True)
    assert ours == theirs
    assert ours[:2] == ("400", "Bad Request")


async def test_a_proxy_from_the_environment_is_used(
    server: TestServer, monkeypatch: pytest.MonkeyPatch, unused_tcp_port: int
) -> None:
    """``http_proxy`` sends the request through the proxy; ``no_proxy`` bypasses it."""
    target = f"http://bootsync-test.invalid:{unused_tcp_port}/MAAS/api/2.0/"
    monkeypatch.setenv("http_proxy", str(server.make_url("/")).rstrip("/"))
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    ours, theirs = await _both(target)
    assert ours == theirs
    assert ours[:2] == ("400", "Bad Request")
    assert '"path": "/MAAS/api/2.0/describe/"' in ours[3]
    monkeypatch.setenv("no_proxy", "bootsync-test.invalid")
    ours, theirs = await _both(target)
    assert ours == theirs
    assert ours[0] == "error"
