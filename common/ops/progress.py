"""Progress of long transfers: a bar on a terminal, periodic log events elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from common.ops.logging import get_logger

log = get_logger("progress")

_BAR_WIDTH = 28
_MIB = 1 << 20


class TransferProgress:
    """Counts bytes and files of one transfer and shows it.

    On a terminal a single line is redrawn at most ``interval`` times a second;
    otherwise a ``transfer_progress`` log event is emitted every ``log_every``
    seconds, so a log is never flooded. Call :meth:`advance` from the event loop
    only.
    """

    def __init__(
        self,
        *,
        total_bytes: int,
        total_files: int,
        label: str = "",
        stream: TextIO | None = None,
        log_every: float = 10.0,
    ) -> None:
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.label = label
        self.done_bytes = 0
        self.done_files = 0
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._log_every = log_every
        self._started = time.monotonic()
        self._last_draw = 0.0

    def advance(self, nbytes: int) -> None:
        """Record ``nbytes`` more bytes received."""
        self.done_bytes += nbytes
        self._maybe_show()

    def file_done(self) -> None:
        """Record one more file finished (downloaded, reused or failed)."""
        self.done_files += 1
        self._maybe_show(force=self.done_files == self.total_files)

    def close(self) -> None:
        """Draw the final state and end the terminal line."""
        if self._tty:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()

    def rate(self) -> float:
        """Bytes per second since the start."""
        return self.done_bytes / max(time.monotonic() - self._started, 1e-6)

    def _maybe_show(self, *, force: bool = False) -> None:
        now = time.monotonic()
        every = 0.1 if self._tty else self._log_every
        if not force and now - self._last_draw < every:
            return
        self._last_draw = now
        if self._tty:
            self._draw()
        else:
            log.info(
                "transfer_progress",
                label=self.label,
                bytes=self.done_bytes,
                total_bytes=self.total_bytes,
                files=self.done_files,
                total_files=self.total_files,
                percent=round(self.percent(), 1),
                mib_per_s=round(self.rate() / _MIB, 1),
            )

    def percent(self) -> float:
        """Bytes done as a percentage of the total (100 when there is nothing to do)."""
        return 100.0 if not self.total_bytes else 100.0 * self.done_bytes / self.total_bytes

    def _draw(self) -> None:
        filled = int(_BAR_WIDTH * min(self.percent(), 100.0) / 100)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        line = (
            f"\r{self.label} [{bar}] {self.percent():5.1f}% "
            f"{self.done_bytes / _MIB:,.1f}/{self.total_bytes / _MIB:,.1f} MiB "
            f"{self.done_files}/{self.total_files} files {self.rate() / _MIB:,.1f} MiB/s"
        )
        self._stream.write(line)
        self._stream.flush()
