"""The rack's standing connection to its region: registration, events, status reports.

:meth:`RegionLink.run` keeps two tasks going until cancelled:

* connect: register (shared secret) → accept the reply (pin or check the
  region's key) → hold the event stream open, asking the sync loop for a sync on
  every ``snapshot`` / ``import`` event → when the stream ends or fails, wait
  (backoff with jitter, at most ``backoff_cap`` seconds) and start over. Every
  (re-)registration asks for a sync too, so a rack converges as soon as its
  region is back.
* report: post the rack's status to the region whenever it changes, and again
  after each (re-)registration.

Failures are logged once per change of state, never once per attempt:
``rack_registered``, ``registration_refused``, ``region_key_changed``,
``registration_failed`` (a 404, 400, TLS failure or a reply no bootsync region
sends: retrying will not fix it, so it is an error and the ``/healthz`` reason),
and (through :class:`RegionHealth`) ``region_unreachable`` /
``region_reachable_again``. Nothing the region sends ends the link: an event
stream over its bounds is ``region_event_stream_refused``, anything unexpected
``region_link_error``; both reconnect with backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal

from common.errors import KeyringError, UpstreamError, is_retryable
from common.ops.logging import get_logger
from common.rackproto import Registration
from common.transfer.http import backoff_delay
from rack.hostfacts import gather_host_facts
from rack.identity import PinnedRegion, RackIdentity, RegionKeyChangedError
from rack.region_client import (
    EventStreamError,
    RegionClient,
    RegionEvent,
    RegistrationRefusedError,
)
from rack.status import StatusBoard

log = get_logger("rack.link")

SYNC_EVENTS = ("snapshot", "import")
LinkState = Literal["starting", "connected", "refused", "key_changed", "bad_reply", "failed"]


class RegionHealth:
    """Whether the region answers; a change is logged once, each failure is not."""

    def __init__(self) -> None:
        self.reachable: bool | None = None

    def failed(self, exc: BaseException, *, url: str) -> None:
        """A call failed; log ``region_unreachable`` if that is news."""
        if self.reachable is not False:
            log.warning("region_unreachable", url=url, error=str(exc))
        self.reachable = False

    def ok(self, *, url: str) -> None:
        """A call succeeded; log ``region_reachable_again`` after an outage."""
        if self.reachable is False:
            log.info("region_reachable_again", url=url)
        self.reachable = True


class RegionLink:
    """Registration, the event stream and status reports of one rack."""

    def __init__(
        self,
        client: RegionClient,
        identity: RackIdentity,
        status: StatusBoard,
        health: RegionHealth,
        *,
        hostname: str,
        rack_url: str,
        on_sync_request: Callable[[str], None],
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
    ) -> None:
        self._client = client
        self._identity = identity
        self._status = status
        self._health = health
        self._hostname = hostname
        self._rack_url = rack_url
        self._request_sync = on_sync_request
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self.state: LinkState = "starting"
        self._problem: str | None = None
        self._registered = asyncio.Event()  # the region gave us a system id
        self.accepted = asyncio.Event()  # a registration was accepted with the pinned key

    @property
    def problem(self) -> str | None:
        """What keeps the rack from syncing now, for operators (/healthz), or None."""
        if self._problem is None and self._health.reachable is False:
            return f"the region at {self._client.base_url} is unreachable"
        return self._problem

    async def run(self) -> None:
        """Stay connected and keep the region informed, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._connect_forever())
            group.create_task(self._report_forever())

    async def register_once(self) -> PinnedRegion:
        """Register and accept the reply; raise what went wrong (logged once per state).

        Raises RegistrationRefusedError (wrong secret), RegionKeyChangedError,
        KeyringError (an unusable keyring in the reply) and UpstreamError.
        """
        registration = Registration(
            hostname=self._hostname,
            url=self._rack_url,
            system_id=self._identity.system_id,
            host=await asyncio.to_thread(gather_host_facts),  # read anew: interfaces change
        )
        url = self._client.base_url
        try:
            reply = await self._client.register(registration, credential=self._identity.credential)
        except RegistrationRefusedError as exc:
            self._enter("refused", _refusal(exc))
            raise
        except UpstreamError as exc:
            if is_retryable(exc):
                if self.state == "failed":  # an outage now, not the earlier refusal
                    self.state, self._problem = "starting", None
                self._health.failed(exc, url=exc.url or url)
            else:
                # 404, 400, TLS, not a bootsync region: retrying will not fix it.
                self._enter("failed", f"registration failed: {exc}")
            raise
        self._health.ok(url=url)
        try:
            pinned = await self._identity.accept(reply)
        except RegionKeyChangedError as exc:
            self._enter("key_changed", str(exc))
            self._status.failed(str(exc))
            raise
        except KeyringError as exc:
            self._enter("bad_reply", str(exc))
            raise
        finally:
            if self._identity.system_id is not None:
                self._registered.set()
        self._enter("connected", None)
        self.accepted.set()
        self._status.changed.set()  # the region may have restarted: tell it again
        return pinned

    async def _connect_forever(self) -> None:
        attempt = 0
        while True:
            try:
                await self.register_once()
                self._request_sync("registered")  # events may have been missed meanwhile
                assert self._identity.system_id is not None
                listening = time.monotonic()
                try:
                    await self._client.listen(
                        self._identity.system_id,
                        self._on_event,
                        credential=self._identity.credential,
                    )
                    log.debug("region_events_ended", url=self._client.base_url)
                finally:
                    # Only a stream that stayed open a while resets the backoff: a region
                    # that ends it at once must not draw a tight reconnect loop.
                    if time.monotonic() - listening >= self._backoff_cap:
                        attempt = 0
            except (RegistrationRefusedError, RegionKeyChangedError, KeyringError):
                pass  # logged once by register_once
            except EventStreamError as exc:
                log.warning("region_event_stream_refused", url=exc.url, error=str(exc))
            except UpstreamError as exc:
                if self.state == "failed":
                    pass  # logged once by register_once
                elif is_retryable(exc):
                    self._health.failed(exc, url=exc.url or self._client.base_url)
                else:
                    log.debug("region_events_failed", error=str(exc))
            except Exception:
                # Nothing the region sends may end the link: a bug here is logged, and the
                # link reconnects with backoff like after any failure.
                log.exception("region_link_error", url=self._client.base_url)
            attempt += 1
            await asyncio.sleep(
                backoff_delay(attempt, base=self._backoff_base, cap=self._backoff_cap)
            )

    def _on_event(self, event: RegionEvent) -> None:
        if event.name in SYNC_EVENTS:
            log.info("region_event", region_event=event.name, snapshot=event.data.get("id"))
            self._request_sync(event.name)
        else:
            log.debug("region_event_ignored", region_event=event.name)

    async def _report_forever(self) -> None:
        await self._registered.wait()
        attempt = 0
        while True:
            await self._status.changed.wait()
            self._status.changed.clear()
            status = self._status.status
            assert self._identity.system_id is not None
            try:
                await self._client.report(
                    self._identity.system_id, status, credential=self._identity.credential
                )
            except Exception as exc:
                if isinstance(exc, RegistrationRefusedError):
                    self._enter("refused", _refusal(exc))
                elif isinstance(exc, UpstreamError):
                    if is_retryable(exc):
                        self._health.failed(exc, url=exc.url or self._client.base_url)
                else:  # not the region's fault alone; the report is tried again all the same
                    log.exception("region_link_error", url=self._client.base_url)
                attempt += 1
                self._status.changed.set()  # still to be sent
                await asyncio.sleep(
                    backoff_delay(attempt, base=self._backoff_base, cap=self._backoff_cap)
                )
                continue
            attempt = 0
            log.debug("status_reported", state=status.state, snapshot_id=status.snapshot_id)

    def _enter(self, state: LinkState, problem: str | None) -> None:
        if state == self.state:
            self._problem = problem  # the latest words for /healthz; logged once per state
            return
        self.state, self._problem = state, problem
        url = self._client.base_url
        if state == "connected":
            log.info(
                "rack_registered",
                url=url,
                system_id=self._identity.system_id,
                fingerprint=self._identity.pinned.fingerprint if self._identity.pinned else None,
            )
        elif state == "refused":
            log.error(
                "registration_refused",
                url=url,
                error=problem,
                hint="HTTP 401: check region.secret_file (`bootsync rack-secret` on the region "
                "host prints the secret); HTTP 403: the region refused this rack's own "
                "credential, the error says what to do",
            )
        elif state == "key_changed":
            log.error("region_key_changed", url=url, error=problem)
        else:
            log.error("registration_failed", url=url, error=problem)


def _refusal(exc: RegistrationRefusedError) -> str:
    """What keeps a refused rack from syncing, for operators."""
    what = "this rack's own credential" if exc.credential_refused else "the shared secret"
    return f"the region refused {what} ({exc})"
