"""The rack hub: bounded, coalescing event boxes; targeted and broadcast events; shutdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.storage.snapshot import PublishedSnapshot
from region.rackhub.hub import EventBox, RackHub


def snapshot(snapshot_id: str) -> PublishedSnapshot:
    """A published snapshot as the publisher announces it."""
    return PublishedSnapshot(id=snapshot_id, path=Path("/nonexistent") / snapshot_id, changed=True)


class TestEventBox:
    """One stream's pending events."""

    async def test_repeated_events_coalesce_and_the_newest_data_wins(self) -> None:
        """Three snapshots and two imports queued while busy come out as two events."""
        box = EventBox()
        for event, data in (
            ("snapshot", "1"),
            ("import", "{}"),
            ("snapshot", "2"),
            ("import", "{}"),
            ("snapshot", "3"),
        ):
            assert box.post(event, data)
        assert await box.take(10) == [("snapshot", "3"), ("import", "{}")]

    async def test_a_quiet_box_returns_nothing_after_the_keepalive_interval(self) -> None:
        """take() with nothing pending gives [] (time for a keepalive)."""
        assert await EventBox().take(0.01) == []

    async def test_a_closed_box_ends_the_stream_and_accepts_nothing(self) -> None:
        """After close(), take() is None even with events pending, and post() is refused."""
        box = EventBox()
        box.post("import", "{}")
        box.close()
        assert await box.take(10) is None
        assert box.post("import", "{}") is False


class TestHub:
    """Routing events to the racks' streams."""

    async def test_a_snapshot_reaches_every_stream_and_an_import_only_its_rack(self) -> None:
        """on_snapshot broadcasts; request_import(id) reaches that rack's streams only."""
        hub = RackHub("s" * 64)
        with hub.connect("aaaaaa") as a1, hub.connect("aaaaaa") as a2, hub.connect("bbbbbb") as b:
            hub.on_snapshot(snapshot("0123abcd"))
            assert hub.request_import("aaaaaa") == 1
            assert hub.request_import("cccccc") == 0
            expected = [("snapshot", json.dumps({"id": "0123abcd"})), ("import", "{}")]
            assert await a1.take(10) == expected
            assert await a2.take(10) == expected
            assert await b.take(10) == [("snapshot", json.dumps({"id": "0123abcd"}))]
            assert hub.request_import() == 2

    def test_a_rack_is_connected_while_any_of_its_streams_is_open(self) -> None:
        """Two streams of one rack: connected until the second one ends."""
        hub = RackHub("s" * 64)
        with hub.connect("aaaaaa"):
            with hub.connect("aaaaaa"):
                assert hub.connected_ids() == {"aaaaaa"}
            assert hub.is_connected("aaaaaa")
        assert not hub.is_connected("aaaaaa")
        assert hub.connected_ids() == frozenset()

    async def test_closing_ends_every_stream_and_refuses_new_ones(self) -> None:
        """close() makes open boxes return None and connect() raise."""
        hub = RackHub("s" * 64)
        with hub.connect("aaaaaa") as box:
            hub.close()
            hub.close()
            assert await box.take(10) is None
        with pytest.raises(RuntimeError, match="closed"), hub.connect("aaaaaa"):
            pass
