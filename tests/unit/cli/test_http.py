"""Requests as the maas CLI sends them, checked by a real aiohttp server and the region's parser.

The standard-library client is synchronous: tests call it in a thread so the
test server keeps running on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.cli.maascli_commands import build_commands, parse_invocation
from common.cli.maascli_http import (
    ApiClient,
    ApiResponse,
    Credentials,
    Part,
    api_url,
    encode_multipart,
    oauth_header,
    print_response,
)
from common.errors import ConnectError
from region.api.auth import parse_oauth_header
from region.api.http import read_params
from tests.unit.cli.describe_sample import describe

ServerFactory = Callable[..., Awaitable[TestServer]]
KEY = Credentials.parse("ck:tk:s3cr&t=%")


async def echo(request: web.Request) -> web.Response:
    """Everything the server saw, parsed the way the region parses it."""
    params = await read_params(request)
    auth = request.headers.get("Authorization")
    body = {
        "method": request.method,
        "path": request.path,
        "query": [list(kv) for kv in request.query.items()],
        "values": [list(kv) for kv in params.values.items()],
        "files": {k: base64.b64encode(v).decode() for k, v in params.files.items()},
        "content_type": request.headers.get("Content-Type"),
        "content_length": request.content_length,
        "key": None if auth is None else list(vars(parse_oauth_header(auth)).values()),
    }
    return web.json_response(body, headers={"X-MAAS-API-Hash": "f" * 40})


@pytest.fixture
async def server(aiohttp_server: ServerFactory) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return await aiohttp_server(app)


def _client(server: TestServer, **kw: Any) -> ApiClient:
    return ApiClient(api_url(str(server.make_url("/MAAS/"))), KEY, **kw)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:5240/MAAS", "http://h:5240/MAAS/api/2.0/"),
        ("http://h:5240/MAAS/", "http://h:5240/MAAS/api/2.0/"),
        ("https://h/MAAS/api/2.0", "https://h/MAAS/api/2.0/"),
        ("http://h/MAAS/api/1.0/", "http://h/MAAS/api/1.0/"),
    ],
)
def test_api_url_ends_in_the_api_version(given: str, expected: str) -> None:
    """A server URL gains ``api/2.0/`` unless it already names an API version."""
    assert api_url(given) == expected


def test_api_url_refuses_what_is_not_http() -> None:
    """A URL without an http(s) scheme and host is a ValueError."""
    with pytest.raises(ValueError, match="not an http"):
        api_url("region:5240/MAAS")


def test_the_oauth_header_carries_the_key_the_region_reads_back() -> None:
    """PLAINTEXT: consumer key, token and ``&secret``, percent-encoded, no realm."""
    header = oauth_header(KEY)
    assert "realm" not in header
    creds = parse_oauth_header(header)
    assert (creds.consumer_key, creds.token_key, creds.token_secret) == ("ck", "tk", "s3cr&t=%")


def test_multipart_parts_are_base64_and_decode_with_the_standard_library() -> None:
    """Each part is base64 with its name; repeated names stay separate parts."""
    ctype, body = encode_multipart(
        [
            Part("arches", b"amd64"),
            Part("arches", b"arm64"),
            Part("title", "Ubuntu – Noble".encode()),
            Part("keyring_data", bytes(range(256)) * 3, filename="keyring_data"),
        ],
        boundary="B0UND",
    )
    assert ctype == 'multipart/form-data; boundary="B0UND"'
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + body
    )
    parts = [
        (
            p.get_param("name", header="content-disposition"),
            p.get_filename(),
            p["Content-Transfer-Encoding"],
            p.get_payload(decode=True),
        )
        for p in message.iter_parts()
    ]
    assert parts == [
        ("arches", None, "base64", b"amd64"),
        ("arches", None, "base64", b"arm64"),
        ("title", None, "base64", "Ubuntu – Noble".encode()),
        ("keyring_data", "keyring_data", "base64", bytes(range(256)) * 3),
    ]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


async def test_post_fields_and_files_reach_the_region_parser(
    server: TestServer, tmp_path: Path
) -> None:
    """A create with repeated keys and a key@=file arrives as values and a file part."""
    keyring = tmp_path / "k.gpg"
    keyring.write_bytes(b"\x99\x01binary")
    commands = build_commands(describe(), anonymous=False)
    inv = parse_invocation(
        commands,
        [
            "boot-source-selections",
            "create",
            "7",
            "os=ubuntu",
            "arches=amd64",
            "arches=arm64",
            f"keyring_data@={keyring}",
        ],
        prog="p",
    )
    with _client(server) as client:
        response = await asyncio.to_thread(client.call, inv)
    seen = response.json()
    assert seen["path"] == "/MAAS/api/2.0/boot-sources/7/selections/"
    assert seen["values"] == [["os", "ubuntu"], ["arches", "amd64"], ["arches", "arm64"]]
    assert base64.b64decode(seen["files"]["keyring_data"]) == b"\x99\x01binary"
    assert seen["key"] == ["ck", "tk", "s3cr&t=%"]


async def test_an_op_without_arguments_sends_no_body(server: TestServer) -> None:
    """``boot-resources import`` is a POST with ``op`` in the query and an empty body."""
    inv = parse_invocation(
        build_commands(describe(), anonymous=False), ["boot-resources", "import"], prog="p"
    )
    with _client(server) as client:
        seen = (await asyncio.to_thread(client.call, inv)).json()
    assert seen["method"] == "POST"
    assert seen["query"] == [["op", "import"]]
    assert not seen["content_length"]
    assert seen["content_type"] is None


async def test_get_arguments_go_in_the_query_string(server: TestServer) -> None:
    """``maas get-config name=x`` is a GET with op and name in the query."""
    inv = parse_invocation(
        build_commands(describe(), anonymous=False),
        ["maas", "get-config", "name=boot_images_auto_import"],
        prog="p",
    )
    with _client(server) as client:
        seen = (await asyncio.to_thread(client.call, inv)).json()
    assert seen["query"] == [["op", "get_config"], ["name", "boot_images_auto_import"]]


async def test_a_changed_api_hash_warns_once(server: TestServer) -> None:
    """A server hash that differs from the stored description's prints one warning."""
    warn = io.StringIO()
    with _client(server, api_hash="0" * 40, warn=warn) as client:
        for _ in range(2):
            url = client.url_for("/MAAS/api/2.0/users/")
            await asyncio.to_thread(client.request, "GET", url, op="whoami")
    assert warn.getvalue().count("run 'bootsync refresh'") == 1


def test_an_unreachable_server_is_a_connect_error(unused_tcp_port: int) -> None:
    """Connection refused surfaces as ConnectError naming the URL."""
    url = f"http://127.0.0.1:{unused_tcp_port}/MAAS/api/2.0/"
    with ApiClient(url, None) as client, pytest.raises(ConnectError, match=str(unused_tcp_port)):
        client.request("GET", url + "describe/")


def _response(status: int, body: bytes, ctype: str, reason: str = "") -> ApiResponse:
    return ApiResponse(
        method="GET",
        url="http://x/",
        status=status,
        reason=reason,
        content_type=ctype,
        headers={},
        body=body,
    )


def test_json_answers_are_pretty_printed_on_stdout() -> None:
    """A 2xx JSON body is printed indented; nothing goes to stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = print_response(_response(200, b'[{"id": 1}]', "application/json"), out=out, err=err)
    assert (code, json.loads(out.getvalue()), err.getvalue()) == (0, [{"id": 1}], "")
    assert '\n    {\n        "id": 1' in out.getvalue()


def test_text_answers_are_printed_as_they_are() -> None:
    """``import`` answers text, printed with one trailing newline; a 204 prints nothing."""
    out, err = io.StringIO(), io.StringIO()
    print_response(
        _response(200, b"Import of boot resources started", "text/plain"), out=out, err=err
    )
    print_response(_response(204, b"", "text/plain"), out=out, err=err)
    assert out.getvalue() == "Import of boot resources started\n"


def test_errors_print_status_and_message_on_stderr_and_exit_2() -> None:
    """A 400 ``{field: [msgs]}`` becomes ``HTTP 400 Bad Request: field: msg``."""
    out, err = io.StringIO(), io.StringIO()
    code = print_response(
        _response(400, b'{"url": ["Enter a valid URL."]}', "application/json", "Bad Request"),
        out=out,
        err=err,
    )
    assert (code, out.getvalue()) == (2, "")
    assert err.getvalue() == "HTTP 400 Bad Request: url: Enter a valid URL.\n"
