"""Chunked custom-image upload and import watching, against a real aiohttp server."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.cli.maascli_aio import AsyncApiClient
from common.cli.maascli_commands import Invocation, build_commands, parse_invocation
from common.cli.maascli_http import Credentials, api_url
from common.cli.maascli_upload import CHUNK_SIZE, upload_resource
from common.cli.maascli_watch import watch_import
from region.api.http import read_params
from tests.unit.cli.describe_sample import describe

ServerFactory = Callable[..., Awaitable[TestServer]]
API = "/MAAS/api/2.0"
UPLOAD_URI = f"{API}/boot-resources/7/upload/18/"


@dataclass
class FakeRegion:
    """Just enough of the region's boot-resources API for the CLI to talk to."""

    held_sha256: set[str] = field(default_factory=set)
    created: list[list[tuple[str, str]]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    put_status: int = 200
    size: int = 0
    sha256: str = ""
    import_polls: int = 3  # is_importing answers true this many times
    imports_started: int = 0
    finish_incomplete: bool = False

    def app(self) -> web.Application:
        app = web.Application(client_max_size=CHUNK_SIZE * 2)
        app.router.add_route("*", f"{API}/boot-resources/", self.resources)
        app.router.add_get(f"{API}/boot-resources/{{id}}/", self.resource)
        app.router.add_put(UPLOAD_URI, self.upload)
        return app

    def _file(self) -> dict[str, Any]:
        done = sum(map(len, self.chunks))
        complete = self.sha256 in self.held_sha256 or done >= self.size > 0
        entry = {
            "filename": "root-tgz",
            "filetype": "root-tgz",
            "sha256": self.sha256,
            "size": self.size,
            "complete": complete,
        }
        if not complete:
            entry |= {"progress": 100 * done / max(self.size, 1), "upload_uri": UPLOAD_URI}
        return entry

    def _detail(self) -> dict[str, Any]:
        file = self._file()
        return {
            "id": 7,
            "type": "Uploaded",
            "name": "custom/mine",
            "architecture": "amd64/generic",
            "resource_uri": f"{API}/boot-resources/7/",
            "sets": {
                "20250101": {
                    "version": "20250101",
                    "size": self.size,
                    "complete": file["complete"],
                    "files": {"root-tgz": file},
                }
            },
        }

    async def resources(self, request: web.Request) -> web.StreamResponse:
        op = request.query.get("op")
        if request.method == "POST" and op == "import":
            self.imports_started += 1
            return web.Response(text="Import of boot resources started")
        if op == "is_importing":
            self.import_polls -= 1
            return web.json_response(self.import_polls >= 0)
        if request.method == "POST":
            params = await read_params(request)
            self.created.append(list(params.values.items()))
            self.size, self.sha256 = int(params.get("size") or 0), params.get("sha256") or ""
            return web.json_response(self._detail(), status=201)
        return web.json_response(self._listing())

    def _listing(self) -> list[dict[str, Any]]:
        polls = max(self.import_polls, 0)
        done = self.finish_incomplete or polls > 0
        noble = "Downloading  50%" if done else "Synced"
        return [
            {
                "id": 1,
                "name": "ubuntu/jammy",
                "architecture": "amd64/ga-22.04",
                "resource_uri": f"{API}/boot-resources/1/",
                "status": "Synced",
            },
            {
                "id": 2,
                "name": "ubuntu/noble",
                "architecture": "amd64/ga-24.04",
                "resource_uri": f"{API}/boot-resources/2/",
                "status": noble,
            },
        ]

    async def resource(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["id"] == "2":
            return web.json_response(
                {
                    "id": 2,
                    "sets": {
                        "20250718": {
                            "version": "20250718",
                            "size": 200 << 20,
                            "complete": False,
                            "progress": 50.0,
                            "files": {},
                        }
                    },
                }
            )
        return web.json_response(self._detail())

    async def upload(self, request: web.Request) -> web.StreamResponse:
        assert request.content_type == "application/octet-stream"
        assert request.headers["Authorization"].startswith("OAuth ")
        if self.put_status != 200:
            return web.Response(status=self.put_status, text="Too much data received.")
        chunk = await request.read()
        assert request.content_length == len(chunk)
        self.chunks.append(chunk)
        return web.Response(text="OK")


@pytest.fixture
def fake() -> FakeRegion:
    return FakeRegion()


@pytest.fixture
async def client(aiohttp_server: ServerFactory, fake: FakeRegion) -> AsyncIterator[AsyncApiClient]:
    server = await aiohttp_server(fake.app())
    async with AsyncApiClient(
        api_url(str(server.make_url("/MAAS/"))), Credentials.parse("a:b:c")
    ) as api:
        yield api


def _invocation(*words: str) -> Invocation:
    return parse_invocation(build_commands(describe(), anonymous=False), list(words), prog="p")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_upload_sends_digest_and_size_then_4_mib_chunks(
    client: AsyncApiClient, fake: FakeRegion, tmp_path: Path
) -> None:
    """The create carries sha256 and size (not the bytes); the bytes follow in 4 MiB PUTs."""
    image = tmp_path / "root.tgz"
    data = bytes(range(256)) * (9 * CHUNK_SIZE // 256) + b"tail!"
    image.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    code = await upload_resource(
        client,
        _invocation(
            "boot-resources",
            "create",
            "name=custom/mine",
            "architecture=amd64/generic",
            f"content@={image}",
        ),
        out=out,
        err=err,
    )
    assert code == 0, err.getvalue()
    assert fake.created == [
        [
            ("architecture", "amd64/generic"),
            ("name", "custom/mine"),
            ("sha256", hashlib.sha256(data).hexdigest()),
            ("size", str(len(data))),
        ]
    ]
    assert [len(c) for c in fake.chunks] == [CHUNK_SIZE] * 9 + [5]
    assert b"".join(fake.chunks) == data
    assert json.loads(out.getvalue())["sets"]["20250101"]["complete"] is True


async def test_upload_is_skipped_when_the_region_already_holds_the_bytes(
    client: AsyncApiClient, fake: FakeRegion, tmp_path: Path
) -> None:
    """A complete file in the create answer means no PUT at all."""
    image = tmp_path / "root.tgz"
    image.write_bytes(b"same bytes")
    fake.held_sha256.add(hashlib.sha256(b"same bytes").hexdigest())
    out, err = io.StringIO(), io.StringIO()
    code = await upload_resource(
        client,
        _invocation(
            "boot-resources",
            "create",
            "name=custom/mine",
            "architecture=amd64/generic",
            f"content@={image}",
        ),
        out=out,
        err=err,
    )
    assert (code, fake.chunks) == (0, [])
    assert "already holds these bytes" in err.getvalue()


async def test_a_refused_chunk_stops_the_upload_with_the_servers_message(
    client: AsyncApiClient, fake: FakeRegion, tmp_path: Path
) -> None:
    """A PUT answered other than 200 ends the upload: status and message on stderr, exit 2."""
    image = tmp_path / "root.tgz"
    image.write_bytes(b"x" * 10)
    fake.put_status = 400
    out, err = io.StringIO(), io.StringIO()
    code = await upload_resource(
        client,
        _invocation(
            "boot-resources",
            "create",
            "name=custom/mine",
            "architecture=amd64/generic",
            f"content@={image}",
        ),
        out=out,
        err=err,
    )
    assert code == 2
    assert err.getvalue().strip() == "HTTP 400 Bad Request: Too much data received."
    assert out.getvalue() == ""


async def test_watch_starts_the_import_and_prints_changes_until_it_ends(
    client: AsyncApiClient, fake: FakeRegion
) -> None:
    """Off a terminal each image's state is printed when it changes, then a summary."""
    out = io.StringIO()
    code = await watch_import(
        client,
        _invocation("boot-resources", "import", "--watch"),
        out=out,
        err=io.StringIO(),
        start=True,
        interval=0,
    )
    assert (code, fake.imports_started) == (0, 1)
    assert out.getvalue().splitlines() == [
        "Import of boot resources started",
        "ubuntu/jammy amd64/ga-22.04: Synced",
        "ubuntu/noble amd64/ga-24.04: Downloading  50%",
        "ubuntu/noble amd64/ga-24.04: Synced",
        "import finished: 2 of 2 images complete",
    ]


async def test_watch_draws_bars_on_a_terminal_and_fails_on_incomplete_images(
    client: AsyncApiClient, fake: FakeRegion
) -> None:
    """On a terminal the bars are redrawn in place; an unfinished image makes the exit 1."""
    fake.finish_incomplete = True
    out = Terminal()
    code = await watch_import(
        client,
        _invocation("boot-resources", "watch"),
        out=out,
        err=io.StringIO(),
        start=False,
        interval=0,
    )
    assert (code, fake.imports_started) == (1, 0)
    text = out.getvalue()
    assert "\x1b[2F" in text  # moved up over the two previous bars
    assert "[############------------]  50.0% 100.0/200.0 MiB  Downloading  50%" in text
    assert text.endswith("incomplete: ubuntu/noble amd64/ga-24.04\n")
