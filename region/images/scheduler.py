"""The hourly auto-import: APScheduler 3.x only triggers; the import is an ordinary coroutine.

A run is due at start-up and then every ``interval_minutes``. Each tick reads
``boot_images_auto_import`` from the database, so an operator switches the
hourly import off and on at run time (``maas set-config``) without a restart;
``boot_images_import_interval_minutes`` changes the interval at once
(:meth:`AutoImport.set_interval`).

In a cluster every region runs this schedule, and each tick first claims the
interval's slot (``claim``: region/cluster/lease.py's ``'auto_import'`` lease,
whose ``expires_at`` is the next due time): the first region to claim it
imports, the others log ``auto_import_skipped`` and wait for the next
interval, so the hourly import fires once per cluster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from common.errors import error_text
from common.ops.logging import get_logger
from region.context import ImportControl

log = get_logger("scheduler")

JOB_ID = "auto_import"


class AutoImport:
    """Owns the scheduler and the one job it runs."""

    def __init__(
        self,
        importer: ImportControl,
        *,
        interval_minutes: int,
        enabled: Callable[[], Awaitable[bool]],
        claim: Callable[[float], Awaitable[bool]] | None = None,
    ) -> None:
        self._importer = importer
        self._enabled = enabled
        self._claim = claim  # (interval seconds) -> True if this region runs this interval
        self._interval = interval_minutes
        self._scheduler = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        """Schedule the first run now and the next ones every interval (call on the loop)."""
        self._scheduler.add_job(
            self.tick,
            IntervalTrigger(minutes=self._interval, timezone=UTC),
            id=JOB_ID,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(60, self._interval * 30),
        )
        self._scheduler.start()
        log.info("auto_import_scheduled", interval_minutes=self._interval)

    @property
    def interval_minutes(self) -> int:
        """Minutes between runs."""
        return self._interval

    def set_interval(self, minutes: int) -> None:
        """Run every ``minutes`` from now on; the next run is ``minutes`` from now."""
        if minutes == self._interval:
            return
        self._interval = minutes
        if self.job() is not None:
            self._scheduler.modify_job(JOB_ID, misfire_grace_time=max(60, minutes * 30))
            self._scheduler.reschedule_job(
                JOB_ID, trigger=IntervalTrigger(minutes=minutes, timezone=UTC)
            )
        log.info("auto_import_rescheduled", interval_minutes=minutes)

    def job(self) -> Any:
        """The scheduled APScheduler job (for status and tests)."""
        return self._scheduler.get_job(JOB_ID)

    def shutdown(self) -> None:
        """Stop triggering new runs (a running import is the importer's business)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def tick(self) -> bool:
        """One scheduled run: start an import unless auto-import is off; True if started.

        In a cluster, only the region that claims this interval's slot starts one.
        """
        if not await self._enabled():
            log.info("auto_import_skipped", reason="boot_images_auto_import is off")
            return False
        if self._claim is not None:
            try:
                claimed = await self._claim(self._interval * 60.0)
            except Exception as exc:  # noqa: BLE001 - the database is unreachable: next tick
                log.warning("auto_import_skipped", reason=f"slot not claimed: {error_text(exc)}")
                return False
            if not claimed:
                log.info("auto_import_skipped", reason="another region ran this interval's import")
                return False
        return self._importer.start(reason="auto-import")
