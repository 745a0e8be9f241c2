"""Download connections read up to READ_BUFSIZE per recv; other transports keep asyncio's size."""

from __future__ import annotations

import asyncio.selector_events
from typing import Any

from common.transfer.http import READ_BUFSIZE, make_session, read_more_per_call
from tests.fakes.upstream import FakeUpstream


async def test_a_download_response_reads_more_per_call_and_only_its_own_connection(
    fake_upstream: FakeUpstream,
) -> None:
    """The response's own transport reads READ_BUFSIZE per recv; asyncio's default is unchanged."""
    body = b"x" * (8 << 20)  # large enough that the connection is still reading it
    fake_upstream.add_file("/blob", body)
    socket_transport: Any = vars(asyncio.selector_events)["_SelectorSocketTransport"]
    default = socket_transport.max_size
    async with (
        make_session(user_agent="bootsync-tests") as session,
        session.get(fake_upstream.url("/blob")) as resp,
    ):
        assert resp.connection is not None
        transport = resp.connection.transport
        read_more_per_call(resp)
        assert getattr(transport, "max_size", None) == READ_BUFSIZE
        assert await resp.read() == body
    assert socket_transport.max_size == default
    assert default < READ_BUFSIZE
