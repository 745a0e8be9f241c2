"""sd_notify messages reach a real datagram socket, never block, and follow the log events."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.ops.sdnotify import Notifier, StatusLine, socket_address


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket standing in for systemd, and its path."""
    home = Path(tempfile.mkdtemp(prefix="sdn", dir="/tmp"))  # socket paths must stay short
    path = str(home / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()
    Path(path).unlink()
    home.rmdir()


def received(sock: socket.socket) -> list[str]:
    """Every message waiting on ``sock``, without waiting for more."""
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return messages


def test_without_notify_socket_every_call_is_a_quiet_no_op() -> None:
    """No $NOTIFY_SOCKET: nothing is sent, nothing raises, the watchdog is off."""
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready("idle") is False
    assert notifier.stopping() is False
    assert notifier.watchdog_interval_s is None


def test_ready_status_and_stopping_arrive_as_newline_separated_assignments(
    listener: tuple[socket.socket, str],
) -> None:
    """Each call is one datagram of KEY=value lines; a newline in a status cannot split it."""
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("idle")
    assert notifier.status("importing 3/12 files\nnext line")
    assert notifier.stopping()
    notifier.close()
    assert received(sock) == [
        "READY=1\nSTATUS=idle",
        "STATUS=importing 3/12 files next line",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_an_abstract_socket_name_is_reached() -> None:
    """``@name`` in $NOTIFY_SOCKET is the abstract socket ``\\0name``."""
    name = f"bootsync-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.send(READY="1")
        notifier.close()
        assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize("value", ["relative/path", "@"])
def test_a_malformed_socket_value_is_refused(value: str) -> None:
    """Only absolute paths and @names are socket addresses."""
    with pytest.raises(ValueError, match="NOTIFY_SOCKET"):
        socket_address(value)


def test_a_vanished_socket_is_logged_once_and_never_raises(
    tmp_path: Path, log_events: list[dict[str, object]]
) -> None:
    """Sending to a socket nobody listens on fails quietly after one sd_notify_failed."""
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.status("a") is False
    assert notifier.status("b") is False
    notifier.close()
    assert [e["event"] for e in log_events] == ["sd_notify_failed"]


def test_a_full_socket_buffer_drops_the_message_instead_of_blocking(
    listener: tuple[socket.socket, str],
) -> None:
    """With systemd not reading, sends return False at once (the loop is never held)."""
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    results = [notifier.status("x" * 4000) for _ in range(2000)]
    notifier.close()
    assert results[0] is True
    assert False in results
    assert len(received(sock)) < len(results)


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_pings_at_half_of_watchdog_usec_for_this_process_only(
    env: dict[str, str], interval: float | None
) -> None:
    """WATCHDOG_USEC/2 seconds, unless WATCHDOG_PID names another process or it is unset."""
    notifier = Notifier({"NOTIFY_SOCKET": "/run/systemd/notify", **env})
    assert notifier.watchdog_interval_s == interval


async def test_the_watchdog_pings_from_the_event_loop_until_cancelled(
    listener: tuple[socket.socket, str],
) -> None:
    """run_watchdog sends WATCHDOG=1 every interval while the loop runs."""
    sock, path = listener
    notifier = Notifier(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": str(os.getpid())}
    )
    task = asyncio.create_task(notifier.run_watchdog())
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    async with asyncio.timeout(5):  # three pings arrive, one every 10 ms
        pings = [(await loop.sock_recv(sock, 4096)).decode() for _ in range(3)]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.close()
    assert set(pings + received(sock)) == {"WATCHDOG=1"}


def test_the_status_line_follows_an_import_and_a_pull(listener: tuple[socket.socket, str]) -> None:
    """Import and pull events become 'importing 1/2 files' and 'idle, last ... ok' lines."""
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    line = StatusLine(notifier, idle="idle")
    steps: list[tuple[str, dict[str, object]]] = [
        ("import_started", {}),
        ("downloads_started", {"files": 2}),
        ("download_finished", {}),
        ("download_reused", {}),
        ("download_failed", {}),
        ("import_finished", {"outcome": "ok"}),
        ("pull_started", {}),
        ("pull_planned", {"files": 0}),
        ("pull_finished", {"outcome": "failed", "error": "HTTP 503"}),
    ]
    for event, fields in steps:
        line(event, fields)
    notifier.close()
    lines = [m.removeprefix("STATUS=") for m in received(sock)]
    assert lines[:4] == [
        "importing (reading sources)",
        "importing 0/2 files",
        "importing 1/2 files",
        "importing 2/2 files",
    ]
    assert lines[4].startswith("idle, last import ")
    assert lines[4].endswith(" UTC ok")
    assert lines[5:7] == ["pulling (reading the region)", "pulling 0/0 files"]
    assert lines[7].endswith(" UTC failed: HTTP 503")
