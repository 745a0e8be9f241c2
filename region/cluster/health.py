"""Whether this region reaches its database: a cheap ping, cached, for /healthz and /metrics.

:meth:`DatabaseHealth.check` runs ``SELECT 1`` with a short timeout at most once
every ``cache_s`` seconds (load balancers poll ``/healthz`` often); the heartbeat
reports its own outcome through :meth:`DatabaseHealth.record`. A change of state
is logged once: ``database_unreachable`` (with the reason) and
``database_reachable`` when it answers again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from common.errors import error_text
from common.ops.logging import get_logger
from region.db.connection import Database

__all__ = ["DatabaseHealth", "DatabaseState"]

log = get_logger("cluster")

PING_TIMEOUT_S = 2.0
CACHE_S = 3.0


@dataclass(frozen=True)
class DatabaseState:
    """The outcome of the last check: up, or down with the reason."""

    up: bool
    reason: str = ""


class DatabaseHealth:
    """The database's reachability as this region last saw it."""

    def __init__(
        self, db: Database, *, timeout_s: float = PING_TIMEOUT_S, cache_s: float = CACHE_S
    ) -> None:
        self._db = db
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._state = DatabaseState(up=True)
        self._checked = -float("inf")  # monotonic time of the last check
        self._lock = asyncio.Lock()

    @property
    def state(self) -> DatabaseState:
        """The last state seen (up until a check or a heartbeat says otherwise)."""
        return self._state

    async def check(self) -> DatabaseState:
        """Ping the database unless a check within ``cache_s`` already answered; the state."""
        async with self._lock:  # concurrent /healthz calls share one ping
            if time.monotonic() - self._checked < self._cache_s:
                return self._state
            try:
                async with asyncio.timeout(self._timeout_s), self._db.read() as conn:
                    await conn.execute("SELECT 1")
            except TimeoutError:
                self.record(False, f"no answer from the database within {self._timeout_s:g} s")
            except Exception as exc:  # noqa: BLE001 - any failure means it is not reachable
                self.record(False, error_text(exc))
            else:
                self.record(True)
            return self._state

    def record(self, up: bool, reason: str = "") -> None:
        """Note what a use of the database showed; logs a change of state."""
        self._checked = time.monotonic()
        if up and not self._state.up:
            log.info("database_reachable", dialect=self._db.dialect)
        elif not up and self._state.up:
            log.error("database_unreachable", dialect=self._db.dialect, error=reason)
        self._state = DatabaseState(up=up, reason="" if up else reason)
