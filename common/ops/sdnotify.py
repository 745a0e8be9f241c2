"""Telling systemd what a ``Type=notify`` daemon is doing (the sd_notify protocol).

systemd passes ``$NOTIFY_SOCKET``: a datagram socket, a filesystem path or an
abstract name written ``@name``. A message is newline-separated assignments:
``READY=1`` once the daemon serves, ``STATUS=<text>`` for ``systemctl status``,
``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` microseconds, ``STOPPING=1``
when shutdown begins. Without ``$NOTIFY_SOCKET`` every call is a no-op.

Sends never block the event loop: the socket is non-blocking, and a message
the kernel cannot queue at once is dropped (systemd reads its socket promptly;
a dropped ``STATUS`` is replaced by the next one, a dropped ping by the next
ping). :class:`StatusLine` turns the import and pull log events into
``STATUS=`` lines such as ``importing 3/12 files``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from common.ops.logging import get_logger

log = get_logger("sdnotify")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def socket_address(value: str) -> str | bytes:
    """The ``sendto`` address for a ``$NOTIFY_SOCKET`` value (``@name`` is abstract).

    Raises ValueError for an empty value or one that is neither a path nor ``@name``.
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise ValueError(f"{NOTIFY_SOCKET}={value!r}: not an absolute path or @abstract name")


class Notifier:
    """Sends sd_notify messages to the socket named in ``environ`` (no socket: no-op)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address: str | bytes | None = None
        self._sock: socket.socket | None = None
        self._failed = False
        self._watchdog_s = _watchdog_interval(env)
        value = env.get(NOTIFY_SOCKET, "")
        if value:
            try:
                self._address = socket_address(value)
            except ValueError as exc:
                log.warning("sd_notify_failed", error=str(exc))

    @property
    def enabled(self) -> bool:
        """True when systemd (or a test) listens for notifications."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None."""
        return self._watchdog_s if self.enabled else None

    def send(self, **fields: str) -> bool:
        """Send one message of ``KEY=value`` lines; True if the kernel accepted it.

        Never raises and never blocks: a full socket buffer drops the message,
        and the first real failure is logged once as ``sd_notify_failed``.
        """
        if self._address is None:
            return False
        message = "\n".join(
            f"{key}={value.replace(chr(10), ' ')}" for key, value in fields.items()
        ).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # not inherited
                self._sock.setblocking(False)
            self._sock.sendto(message, self._address)
        except BlockingIOError:
            return False
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("sd_notify_failed", error=str(exc), socket=str(self._address))
            return False
        return True

    def ready(self, status: str) -> bool:
        """The daemon serves: ``READY=1`` with a status line."""
        return self.send(READY="1", STATUS=status)

    def status(self, text: str) -> bool:
        """What the daemon is doing now (``systemctl status`` shows it)."""
        return self.send(STATUS=text)

    def stopping(self, status: str = "stopping") -> bool:
        """Shutdown has begun: ``STOPPING=1``."""
        return self.send(STOPPING="1", STATUS=status)

    async def run_watchdog(self) -> None:
        """Ping ``WATCHDOG=1`` from the event loop until cancelled (returns at once if off).

        The pings come from the loop itself, so a loop stuck in a blocking call
        stops them and systemd restarts the daemon.
        """
        interval = self.watchdog_interval_s
        if interval is None:
            return
        while True:
            self.send(WATCHDOG="1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        """Close the socket (a later send opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    pid = env.get(WATCHDOG_PID)
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process (e.g. our parent)
    try:
        usec = int(env.get(WATCHDOG_USEC, ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


STATUS_EVENTS = frozenset(
    {
        "import_started",
        "pull_started",
        "downloads_started",
        "pull_planned",
        "download_finished",
        "download_failed",
        "import_finished",
        "pull_finished",
    }
)
"""The log events :class:`StatusLine` reads (the catalogue test checks they exist)."""


class StatusLine:
    """Keeps ``STATUS=`` in step with the import and pull log events.

    Call it with each event (it is an event observer, see
    :func:`common.ops.metrics.tap_log_events`); it sends a new status only when the
    text changes: ``importing (reading sources)``, ``importing 3/12 files``,
    ``idle, last import 12:00 UTC ok``; the same with ``pulling`` for a rack.
    """

    def __init__(self, notifier: Notifier, *, idle: str) -> None:
        self._notifier = notifier
        self.text = idle
        self._files = 0
        self._done = 0
        self._verb = ""

    def __call__(self, event: str, fields: Mapping[str, Any]) -> None:
        """Observe one log event."""
        if event in ("import_started", "pull_started"):
            importing = event == "import_started"
            self._verb = "importing" if importing else "pulling"
            self._files = self._done = 0
            self._set(f"{self._verb} (reading {'sources' if importing else 'the region'})")
        elif event in ("downloads_started", "pull_planned") and self._verb:
            self._files, self._done = int(fields.get("files", 0)), 0
            self._set(f"{self._verb} {self._done}/{self._files} files")
        elif event in ("download_finished", "download_failed") and self._files:
            self._done = min(self._done + 1, self._files)
            self._set(f"{self._verb} {self._done}/{self._files} files")
        elif event in ("import_finished", "pull_finished"):
            kind = "import" if event == "import_finished" else "pull"
            self._verb, self._files = "", 0
            self._set(
                f"idle, last {kind} {datetime.now(UTC):%H:%M} UTC "
                f"{fields.get('outcome', '?')}{_why(fields)}"
            )

    def _set(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self._notifier.status(text)


def _why(fields: Mapping[str, Any]) -> str:
    error = fields.get("error")
    if not error:
        errors = fields.get("errors") or ()
        error = errors[0] if errors else None
    return f": {str(error)[:200]}" if error else ""
