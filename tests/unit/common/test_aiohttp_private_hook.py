"""The private aiohttp hook that common/storage/fileserve.py overrides is still there and used.

SendfileResponse overrides ``aiohttp.web_fileresponse.FileResponse._sendfile(self, request,
fobj, offset, count)``, a private method aiohttp may change in any release. pyproject.toml
pins aiohttp to one minor version; these tests fail with a message saying what to check
when the installed aiohttp leaves that pin or no longer has (or calls) the hook.
"""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path
from typing import IO, Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_fileresponse import FileResponse
from aiohttp.web_request import BaseRequest
from packaging.requirements import Requirement
from packaging.version import Version
from pytest_aiohttp import AiohttpClient

from common.storage.fileserve import MIN_SENDFILE_BYTES, SendfileResponse

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"
HOOK_PARAMETERS = ["self", "request", "fobj", "offset", "count"]
WHAT_TO_DO = (
    "common/storage/fileserve.py overrides aiohttp's private FileResponse._sendfile; "
    "read that method in the new aiohttp, adapt SendfileResponse._sendfile, then move "
    "the aiohttp pin in pyproject.toml and regenerate requirements.lock"
)


def aiohttp_pin() -> Requirement:
    """The aiohttp requirement of the project's dependencies in pyproject.toml."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    (pin,) = [r for r in map(Requirement, project["dependencies"]) if r.name == "aiohttp"]
    return pin


def test_aiohttp_is_pinned_to_one_minor_version_and_the_installed_one_is_inside_it() -> None:
    """pyproject.toml allows exactly one aiohttp minor version, and that one is installed."""
    pin = aiohttp_pin()
    lower = [Version(s.version) for s in pin.specifier if s.operator == ">="]
    upper = [Version(s.version) for s in pin.specifier if s.operator == "<"]
    assert len(lower) == 1, f"{pin}: pin aiohttp as >=X.Y,<X.(Y+1); {WHAT_TO_DO}"
    assert len(upper) == 1, f"{pin}: pin aiohttp as >=X.Y,<X.(Y+1); {WHAT_TO_DO}"
    assert upper[0].release[:2] == (lower[0].major, lower[0].minor + 1), (
        f"{pin} allows more than one minor version of aiohttp; {WHAT_TO_DO}"
    )
    installed = Version(aiohttp.__version__)
    assert installed in pin.specifier, (
        f"aiohttp {installed} is installed but pyproject.toml pins {pin}; {WHAT_TO_DO}"
    )


def test_file_response_still_has_the_sendfile_hook_with_the_same_parameters() -> None:
    """FileResponse._sendfile exists, is a coroutine and takes (self, request, fobj, offset, count)."""
    hook = getattr(FileResponse, "_sendfile", None)
    assert hook is not None, (
        f"aiohttp {aiohttp.__version__} has no FileResponse._sendfile; {WHAT_TO_DO}"
    )
    assert inspect.iscoroutinefunction(hook), (
        f"aiohttp {aiohttp.__version__}: FileResponse._sendfile is no longer async; {WHAT_TO_DO}"
    )
    parameters = list(inspect.signature(hook).parameters)
    assert parameters == HOOK_PARAMETERS, (
        f"aiohttp {aiohttp.__version__}: FileResponse._sendfile{tuple(parameters)} differs "
        f"from the {tuple(HOOK_PARAMETERS)} SendfileResponse overrides; {WHAT_TO_DO}"
    )
    ours = list(inspect.signature(SendfileResponse._sendfile).parameters)
    assert ours == HOOK_PARAMETERS
    assert SendfileResponse._sendfile is not FileResponse._sendfile


async def test_file_response_sends_its_body_through_the_hook(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    """Serving a large file calls the subclass's _sendfile once, with the whole body's range."""
    data = bytes(range(256)) * ((MIN_SENDFILE_BYTES + 4096) // 256)
    path = tmp_path / "squashfs"
    path.write_bytes(data)
    calls: list[tuple[int, int]] = []

    class Recording(SendfileResponse):
        async def _sendfile(
            self, request: BaseRequest, fobj: IO[Any], offset: int, count: int
        ) -> AbstractStreamWriter:
            calls.append((offset, count))
            return await super()._sendfile(request, fobj, offset, count)

    async def handler(_request: web.Request) -> web.StreamResponse:
        return Recording(path)

    app = web.Application()
    app.router.add_get("/f", handler)
    client = await aiohttp_client(app)
    async with client.get("/f") as resp:
        body = await resp.read()
    assert body == data
    assert calls == [(0, len(data))], (
        f"aiohttp {aiohttp.__version__}: FileResponse no longer sends its body through "
        f"_sendfile, so SendfileResponse is bypassed; {WHAT_TO_DO}"
    )
