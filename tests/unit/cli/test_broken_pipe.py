"""``bootsync PROFILE ... | head -1``: a reader that goes away early ends the CLI quietly."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from common.cli import EXIT_BROKEN_PIPE
from common.cli.maascli_http import Credentials
from common.cli.maascli_profiles import Profile, ProfileStore
from tests.unit.cli.describe_sample import describe

ServerFactory = Callable[..., Awaitable[TestServer]]
ROOT = Path(__file__).resolve().parents[3]
# Far more than a pipe holds (64 KiB on Linux), so the CLI is still writing when
# the reader closes its end.
RESOURCES = 5000


async def boot_resources(_request: web.Request) -> web.Response:
    """A long ``boot-resources read`` answer, one resource per pretty-printed block."""
    body = [
        {"id": i, "type": "Synced", "name": f"ubuntu/release-{i}", "architecture": "amd64/ga"}
        for i in range(RESOURCES)
    ]
    return web.json_response(body)


def _first_line_then_close(fd: int) -> bytes:
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        line = b""
        while not line.endswith(b"\n"):
            chunk = pipe.read(1)
            if not chunk:
                break
            line += chunk
        return line


async def test_boot_resources_read_into_a_closed_pipe_exits_quietly(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    """A stdout pipe closed after one line ends the CLI with 141 and no traceback on stderr."""
    app = web.Application()
    app.router.add_get("/MAAS/api/2.0/boot-resources/", boot_resources)
    server = await aiohttp_server(app)
    config = tmp_path / "config"
    profile = Profile(
        name="admin",
        url=str(server.make_url("/MAAS/api/2.0/")),
        credentials=Credentials.parse("ck:tk:ts"),
        description=describe(f"127.0.0.1:{server.port}"),
    )
    await asyncio.to_thread(ProfileStore(config / "bootsync" / "profiles.json").save, profile)
    env = {**os.environ, "XDG_CONFIG_HOME": str(config), "PYTHONPATH": str(ROOT)}
    read_end, write_end = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.cli",
        "admin",
        "boot-resources",
        "read",
        env=env,
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    # What `head -1` does: read up to the first line, then close the pipe and go.
    first = await asyncio.to_thread(_first_line_then_close, read_end)
    _, err = await proc.communicate()
    assert first == b"[\n"
    assert err.decode() == ""
    assert proc.returncode == EXIT_BROKEN_PIPE == 141
