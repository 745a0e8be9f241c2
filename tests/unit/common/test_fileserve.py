"""SendfileResponse: the same answers as FileResponse, with os.sendfile on every loop."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_writer import StreamWriter
from aiohttp.test_utils import TestClient, TestServer

from common.ops.runtime import LoopName, loop_factory
from common.storage.fileserve import MIN_SENDFILE_BYTES, SendfileResponse, send_fd, wait_flushed

SIZE = 3 * MIN_SENDFILE_BYTES + 12345
COMPARED = (
    "Content-Length",
    "Content-Range",
    "Content-Type",
    "ETag",
    "Last-Modified",
    "Accept-Ranges",
)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str | None]
    body: bytes


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, bytes]:
    """A file larger than MIN_SENDFILE_BYTES, of random bytes."""
    data = os.urandom(SIZE)
    path = tmp_path / "boot-initrd"
    path.write_bytes(data)
    return path, data


def request_cases(etag: str, last_modified: str) -> list[tuple[str, dict[str, str]]]:
    """Requests covering full bodies, Range (large and small), HEAD and conditionals."""
    return [
        ("GET", {}),
        ("HEAD", {}),
        ("GET", {"Range": "bytes=100-1500099"}),
        ("GET", {"Range": f"bytes={MIN_SENDFILE_BYTES}-"}),
        ("GET", {"Range": "bytes=-1500000"}),
        ("GET", {"Range": "bytes=10-19"}),  # below the threshold: FileResponse's own path
        ("GET", {"Range": f"bytes={SIZE + 10}-"}),  # 416
        ("HEAD", {"Range": "bytes=0-1499999"}),
        ("GET", {"If-None-Match": etag}),  # 304
        ("GET", {"If-None-Match": '"other"'}),
        ("GET", {"If-Modified-Since": last_modified}),  # 304
        ("GET", {"If-Match": '"other"'}),  # 412
        ("GET", {"If-Range": "Thu, 01 Jan 1998 00:00:00 GMT", "Range": "bytes=0-9"}),  # 200
        ("GET", {}),  # again on the same keep-alive connection
    ]


async def answers(
    response: Callable[[Path], web.StreamResponse], path: Path, etag_from: Answer | None = None
) -> list[Answer]:
    """Each request of request_cases, in order over one client, against ``response``."""

    async def handler(_request: web.Request) -> web.StreamResponse:
        return response(path)

    app = web.Application()
    app.router.add_get("/f", handler)
    server = TestServer(app)
    async with server, TestClient[web.Request, web.Application](server) as client:

        async def ask(method: str, headers: dict[str, str]) -> Answer:
            async with client.request(method, "/f", headers=headers) as resp:
                return Answer(
                    resp.status, {h: resp.headers.get(h) for h in COMPARED}, await resp.read()
                )

        first = etag_from or await ask("GET", {})
        cases = request_cases(first.headers["ETag"] or "", first.headers["Last-Modified"] or "")
        return [await ask(method, headers) for method, headers in cases]


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_sendfile_response_answers_exactly_like_file_response(
    loop_name: LoopName, image: tuple[Path, bytes]
) -> None:
    """Status, headers and body match FileResponse for Range, HEAD, ETag/304, 412 and 416."""
    path, data = image
    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        expected = runner.run(answers(web.FileResponse, path))
        actual = runner.run(answers(SendfileResponse, path))
    assert actual == expected
    assert [a.status for a in actual] == [
        200,
        200,
        206,
        206,
        206,
        206,
        416,
        206,
        304,
        200,
        304,
        412,
        200,
        200,
    ]
    assert actual[0].body == data
    assert actual[-1].body == data
    assert actual[2].body == data[100:1500100]
    assert actual[3].body == data[MIN_SENDFILE_BYTES:]
    assert actual[4].body == data[-1500000:]
    assert actual[1].body == b""
    assert actual[1].headers["Content-Length"] == str(SIZE)


async def read_all(sock: socket.socket, count: int) -> bytes:
    """Everything ``sock`` receives until EOF or ``count`` bytes."""
    loop = asyncio.get_running_loop()
    chunks = bytearray()
    while len(chunks) < count:
        chunk = await loop.sock_recv(sock, 1 << 16)
        if not chunk:
            break
        chunks += chunk
    return bytes(chunks)


async def test_send_fd_sends_the_requested_slice_through_a_small_socket_buffer(
    image: tuple[Path, bytes],
) -> None:
    """A slice larger than the socket buffer arrives whole and in order."""
    path, data = image
    left, right = socket.socketpair()
    with left, right, path.open("rb") as src:
        left.setblocking(False)
        right.setblocking(False)
        reader = asyncio.create_task(read_all(right, SIZE - 1000))
        sent = await send_fd(left.fileno(), src.fileno(), 500, SIZE - 1000)
        received = await reader
    assert sent == SIZE - 1000
    assert received == data[500 : SIZE - 500]


async def test_send_fd_returns_fewer_bytes_when_the_file_ends_early(
    image: tuple[Path, bytes],
) -> None:
    """Asking for more than the file holds sends what there is and reports that count."""
    path, data = image
    left, right = socket.socketpair()
    with left, right, path.open("rb") as src:
        left.setblocking(False)
        right.setblocking(False)
        reader = asyncio.create_task(read_all(right, 4000))
        sent = await send_fd(left.fileno(), src.fileno(), SIZE - 4000, 9000)
        received = await reader
    assert sent == 4000
    assert received == data[-4000:]


async def test_send_fd_raises_connection_error_when_the_peer_is_gone(
    image: tuple[Path, bytes],
) -> None:
    """A closed peer surfaces as ConnectionError, which aiohttp treats as a client disconnect."""
    path, _ = image
    left, right = socket.socketpair()
    right.close()
    with left, path.open("rb") as src:
        left.setblocking(False)
        with pytest.raises(ConnectionError):
            await send_fd(left.fileno(), src.fileno(), 0, SIZE)


async def test_cancelled_send_leaves_the_callers_descriptors_usable(
    image: tuple[Path, bytes],
) -> None:
    """Cancelling a send blocked on a full socket returns, and the caller's fds stay open."""
    path, _ = image
    left, right = socket.socketpair()
    with left, right, path.open("rb") as src:
        left.setblocking(False)
        task = asyncio.create_task(send_fd(left.fileno(), src.fileno(), 0, SIZE))
        loop = asyncio.get_running_loop()
        data_arrived: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not data_arrived.done():
                data_arrived.set_result(None)

        loop.add_reader(right, wake)
        await data_arrived
        loop.remove_reader(right)
        for _ in range(20):  # nobody reads: the sender fills the buffer and waits
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert os.fstat(src.fileno()).st_size == SIZE
        assert left.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_wait_flushed_returns_only_once_the_transport_buffer_is_empty(loop_name: LoopName) -> None:
    """Bytes a slow peer left in the transport buffer are flushed before sendfile may start."""
    pending = os.urandom(4 << 20)

    async def scenario() -> tuple[int, bool, int, bytes, tuple[int, int], tuple[int, int]]:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        right.setblocking(False)
        transport, protocol = await loop.create_connection(lambda: BaseProtocol(loop), sock=left)
        limits = transport.get_write_buffer_limits()
        transport.write(pending)  # the peer reads nothing yet: most of it stays buffered
        buffered = transport.get_write_buffer_size()
        flushed = asyncio.create_task(wait_flushed(transport, StreamWriter(protocol, loop)))
        for _ in range(20):
            await asyncio.sleep(0)
        waited = not flushed.done()
        received = await read_all(right, len(pending))
        await flushed
        left_over = transport.get_write_buffer_size()
        transport.close()
        right.close()
        return buffered, waited, left_over, received, limits, transport.get_write_buffer_limits()

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        buffered, waited, left_over, received, before, after = runner.run(scenario())
    assert buffered > 0
    assert waited
    assert left_over == 0
    assert received == pending
    assert after == before
