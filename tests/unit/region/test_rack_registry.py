"""The racks table: ids, re-registration, status reports, on a real SQLite database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.rackproto import HostFacts, HostInterface, RackImage, RackStatus, Registration
from region.db.connection import Database, open_db
from region.db.racks import get_rack, list_racks, register_rack, store_status
from region.db.timestamps import utc_text

NOBLE = RackImage(name="ubuntu/noble", architecture="amd64", subarches=["generic"])


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated region database."""
    async with open_db(tmp_path / "region.db") as database:
        yield database


async def test_a_new_rack_gets_a_maas_style_id_and_no_status(db: Database) -> None:
    """Six lowercase letters/digits; state, snapshot and last_sync are unset."""
    row, new = await register_rack(db, Registration(hostname="rack1", url="http://r:5248"))
    assert new
    assert re.fullmatch(r"[a-z0-9]{6}", row.system_id)
    assert (row.state, row.snapshot_id, row.images, row.last_sync) == (None, None, (), None)


async def test_re_registration_updates_the_row_and_unknown_ids_are_replaced(
    db: Database,
) -> None:
    """A known id keeps its row and registration time; an unknown one makes a new row."""
    first, _ = await register_rack(db, Registration(hostname="rack1", url="http://a:5248"))
    again, new = await register_rack(
        db, Registration(hostname="rack1b", url="http://b:5248", system_id=first.system_id)
    )
    other, other_new = await register_rack(
        db, Registration(hostname="rack2", url="http://c", system_id="gone00")
    )
    assert not new
    assert (again.system_id, again.hostname, again.url) == (
        first.system_id,
        "rack1b",
        "http://b:5248",
    )
    assert again.registered == first.registered
    assert other_new
    assert other.system_id != "gone00"
    assert [r.hostname for r in await list_racks(db)] == ["rack1b", "rack2"]


async def test_a_status_report_is_stored_and_a_report_without_last_sync_keeps_it(
    db: Database,
) -> None:
    """Images round-trip; last_sync is normalised to naive UTC and survives a later report."""
    row, _ = await register_rack(db, Registration(hostname="rack1", url="http://r:5248"))
    assert await store_status(
        db,
        row.system_id,
        RackStatus(
            state="synced", snapshot_id="s1", images=[NOBLE], last_sync="2026-01-02T05:04:05+02:00"
        ),
    )
    assert await store_status(
        db,
        row.system_id,
        RackStatus(state="failed", snapshot_id="s1", images=[NOBLE], error="disk full"),
    )
    stored = await get_rack(db, row.system_id)
    assert stored is not None
    assert (stored.state, stored.snapshot_id, stored.images, stored.error) == (
        "failed",
        "s1",
        (NOBLE,),
        "disk full",
    )
    assert stored.last_sync == "2026-01-02T03:04:05.000000"


async def test_a_report_for_an_unknown_rack_or_with_a_bad_time_is_refused(
    db: Database,
) -> None:
    """Unknown id: False; an unparsable last_sync: ValueError naming the field."""
    assert not await store_status(db, "nosuch", RackStatus(state="idle", snapshot_id=None))
    row, _ = await register_rack(db, Registration(hostname="rack1", url="http://r:5248"))
    with pytest.raises(ValueError, match=r"^last_sync: "):
        await store_status(
            db, row.system_id, RackStatus(state="synced", snapshot_id="s", last_sync="soon")
        )


def test_times_are_stored_as_naive_utc() -> None:
    """``Z``, offsets and naive times all become naive UTC with microseconds."""
    assert utc_text("2026-01-02T03:04:05Z") == "2026-01-02T03:04:05.000000"
    assert utc_text("2026-01-02T03:04:05") == "2026-01-02T03:04:05.000000"


HOST = HostFacts(
    architecture="arm64",
    cpu_count=4,
    cpu_speed=2000,
    memory=8192,
    osystem="ubuntu",
    distro_series="noble",
    version="9.9.9",
    interfaces=[
        HostInterface(name="eth0", mac_address="52:54:00:aa:bb:cc", addresses=["10.0.0.5/24"])
    ],
)


async def test_host_facts_are_stored_and_kept_by_a_registration_without_them(
    db: Database,
) -> None:
    """A registration's host facts land on the row; a later one without facts keeps them."""
    row, _ = await register_rack(db, Registration(hostname="rack1", url="http://r:5248", host=HOST))
    assert row.host == HOST
    again, _ = await register_rack(
        db, Registration(hostname="rack1", url="http://r:5248", system_id=row.system_id)
    )
    assert again.host == HOST
    newer = HostFacts(**{**HOST.__dict__, "memory": 16384, "interfaces": []})
    third, _ = await register_rack(
        db,
        Registration(hostname="rack1", url="http://r:5248", system_id=row.system_id, host=newer),
    )
    assert third.host == newer


async def test_a_rack_that_never_sent_host_facts_has_none(db: Database) -> None:
    """A rack older than host facts reads back with host None."""
    row, _ = await register_rack(db, Registration(hostname="rack1", url="http://r:5248"))
    assert row.host is None
