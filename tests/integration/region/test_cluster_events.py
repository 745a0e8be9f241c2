"""The cluster event bus (region/cluster/events.py) on SQLite and on a real PostgreSQL server.

On PostgreSQL an event is a NOTIFY on ``bootsync_events`` heard by each region's
dedicated LISTEN connection; the restart test stops and starts the server (with
pg_ctl, keeping its data) under a listening bus.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from region.cluster.events import CHANNEL, ClusterEvents, open_events
from region.db.connection import Database, open_db
from tests.fakes.postgres import PostgresServer, pg_bin
from tests.fakes.waiting import eventually

LogEvents = list[MutableMapping[str, Any]]


class RestartablePostgres(PostgresServer):
    """A PostgreSQL server of its own that a test may stop and start again, data kept."""

    restarted = False

    def _pg_ctl(self, *argv: str) -> None:
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl is not None
        subprocess.run(
            self._cmd(pg_ctl, "-D", str(self.data), *argv), check=True, capture_output=True
        )

    def halt(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected); wait until it is down."""
        self._pg_ctl("-m", "fast", "-w", "stop")
        if self._process is not None:
            self._process.wait()

    def resume(self) -> None:
        """Start the stopped server again on the same port; return once it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off"
        )
        self._pg_ctl("-w", "-l", str(self.root / "restarted.log"), "-o", options, "start")
        self.pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        self.restarted = True

    def stop(self) -> None:
        """Stop a restarted server through pg_ctl (it is no child of ours), then clean up."""
        if self.restarted and (self.data / "postmaster.pid").exists():
            self._pg_ctl("-m", "fast", "-w", "stop")
        super().stop()


@pytest.fixture
def restartable() -> Iterator[RestartablePostgres]:
    """A PostgreSQL server for one test, which it may stop and start."""
    server = RestartablePostgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """A fresh database on each engine: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "region.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return await server.new_database()


@pytest.fixture
async def db(target: str | Path) -> AsyncIterator[Database]:
    """The region database opened on the test's engine."""
    async with open_db(target, readers=1) as opened:
        yield opened


def recorder(into: list[dict[str, Any]]) -> Any:
    """A subscriber that appends each event's fields to ``into``."""

    async def record(fields: Mapping[str, Any]) -> None:
        into.append(dict(fields))

    return record


def logged(log_events: LogEvents, name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in log_events if e["event"] == name]


async def test_a_region_hears_its_own_events_with_its_name(db: Database) -> None:
    """publish() hands the fields plus the sender's name to this region's subscribers, once."""
    heard: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    async with open_events(db, "region-a") as events:
        events.subscribe("import_finished", recorder(heard))
        events.subscribe("blobs_held", recorder(others))
        await events.publish("import_finished", outcome="ok", published=True)
        await eventually(lambda: heard, "the event")
        await asyncio.sleep(0.2)  # a second delivery (its own NOTIFY) would arrive by now
    assert heard == [{"outcome": "ok", "published": True, "region": "region-a"}]
    assert others == []


async def test_an_event_reaches_a_listener_on_another_database_handle(
    postgres_server: PostgresServer,
) -> None:
    """An event published through one Database is heard by a bus on another handle of the server."""
    url = await postgres_server.new_database()
    heard_a: list[dict[str, Any]] = []
    heard_b: list[dict[str, Any]] = []
    async with (
        open_db(url, readers=1) as one,
        open_db(url, readers=1) as two,
        open_events(one, "a") as region_a,
        open_events(two, "b") as region_b,
    ):
        region_a.subscribe("blobs_held", recorder(heard_a))
        region_b.subscribe("blobs_held", recorder(heard_b))
        await region_a.publish("blobs_held")
        await region_b.publish("blobs_held", count=3)
        await eventually(lambda: len(heard_a) == len(heard_b) == 2, "both events in both regions")
        await asyncio.sleep(0.2)
    expected = [{"region": "a"}, {"count": 3, "region": "b"}]
    assert sorted(heard_a, key=str) == sorted(heard_b, key=str) == sorted(expected, key=str)


async def test_the_listener_survives_a_postgresql_restart(
    restartable: RestartablePostgres, log_events: LogEvents
) -> None:
    """After the server stops and starts again the listener reconnects (logged) and hears events."""
    url = await restartable.new_database()
    heard: list[dict[str, Any]] = []
    own: list[dict[str, Any]] = []
    async with (
        open_db(url, readers=1) as one,
        open_db(url, readers=1) as two,
        open_events(one, "a") as sender,
        open_events(two, "b") as receiver,
    ):
        receiver.subscribe("import_finished", recorder(heard))
        sender.subscribe("import_finished", recorder(own))
        await sender.publish("import_finished", outcome="ok", published=True)
        await eventually(lambda: len(heard) == 1, "the event before the restart")

        await asyncio.to_thread(restartable.halt)
        await eventually(lambda: len(logged(log_events, "db_connection_lost")) == 2, "both lost")
        await sender.publish("import_finished", outcome="failed", published=False)
        await eventually(lambda: len(own) == 2, "the sender's own event while the server is down")
        assert logged(log_events, "cluster_event_not_sent")[0]["kind"] == "import_finished"
        await asyncio.sleep(1.0)  # down long enough for reconnection attempts to fail

        await asyncio.to_thread(restartable.resume)
        await eventually(lambda: len(logged(log_events, "db_reconnected")) == 2, "both back")
        await sender.publish("import_finished", outcome="ok", published=False)
        await eventually(lambda: len(heard) == 2, "the event after the restart")
    assert heard == [
        {"outcome": "ok", "published": True, "region": "a"},
        {"outcome": "ok", "published": False, "region": "a"},
    ]
    assert [e["outcome"] for e in own] == ["ok", "failed", "ok"]
    back = logged(log_events, "db_reconnected")
    assert all(e["channel"] == CHANNEL and e["attempts"] >= 2 for e in back), back


async def test_an_event_too_large_for_notify_is_refused(db: Database) -> None:
    """An event over PostgreSQL's 8000-byte NOTIFY limit raises ValueError and reaches nobody."""
    heard: list[dict[str, Any]] = []
    async with open_events(db, "a") as events:
        events.subscribe("big", recorder(heard))
        with pytest.raises(ValueError, match="over 7999"):
            await events.publish("big", text="x" * 8000)
        await events.publish("big", text="x" * 7000)
        await eventually(lambda: heard, "the event that fits")
    assert [len(e["text"]) for e in heard] == [7000]


async def test_a_failing_subscriber_does_not_stop_the_others(
    db: Database, log_events: LogEvents
) -> None:
    """A subscriber that raises is logged; the other subscribers still get the event."""
    heard: list[dict[str, Any]] = []

    async def broken(fields: Mapping[str, Any]) -> None:
        raise RuntimeError(f"cannot handle {fields['region']}")

    async with open_events(db, "a") as events:
        events.subscribe("blobs_held", broken)
        events.subscribe("blobs_held", recorder(heard))
        await events.publish("blobs_held")
        await eventually(lambda: heard and logged(log_events, "cluster_event_handler_failed"))
    [failure] = logged(log_events, "cluster_event_handler_failed")
    assert failure["error"] == "cannot handle a"
    assert failure["kind"] == "blobs_held"


async def test_a_malformed_notification_is_ignored(db: Database, log_events: LogEvents) -> None:
    """A notification on the channel that is no cluster event is logged and skipped."""
    heard: list[dict[str, Any]] = []
    async with open_events(db, "a") as events:
        events.subscribe("blobs_held", recorder(heard))
        await db.notify(CHANNEL, "not json")
        await db.notify(CHANNEL, '{"kind": 1, "origin": "x", "fields": {}}')
        await eventually(lambda: len(logged(log_events, "cluster_event_malformed")) == 2)
        await events.publish("blobs_held")
        await eventually(lambda: heard, "the next event")
    assert heard == [{"region": "a"}]


async def test_subscriber_calls_still_running_are_cancelled_at_close(db: Database) -> None:
    """Closing the bus cancels subscriber calls in progress instead of leaving them behind."""
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def slow(_fields: Mapping[str, Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    events = ClusterEvents(db, "a")
    events.subscribe("blobs_held", slow)
    await events.publish("blobs_held")
    await asyncio.wait_for(started.wait(), 5)
    await events.close()
    assert cancelled == [True]
