"""Each rack's own credential: issued at first registration, required to act under its id.

The shared rack secret lets a rack in; it no longer lets one rack re-register,
report or listen as another. The region half runs against the real region app;
the rack half runs the rack's own parts (rack.app.open_rack) against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from common.rackproto import CREDENTIAL_HEADER, REGISTER_PATH, STATUS_PATH
from rack.app import open_rack
from rack.config import RackConfig
from rack.identity import RACK_FILE
from rack.region_client import RegistrationRefusedError
from tests.integration.region.rack_harness import RackRegion, events_path

Events = list[MutableMapping[str, Any]]


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The default umask, under which new files would be 0644."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


async def credential_hash_in_db(region: RackRegion, system_id: str) -> str | None:
    """What the region's database holds of the rack's credential."""
    async with (
        region.ctx.db.read() as conn,
        conn.execute("SELECT credential_hash FROM racks WHERE system_id = ?", (system_id,)) as cur,
    ):
        row = await cur.fetchone()
    assert row is not None
    value = row["credential_hash"]
    return None if value is None else str(value)


async def hostname_of(region: RackRegion, system_id: str) -> str:
    """The rack's hostname as the MAAS API shows it."""
    resp = await region.api("GET", f"/rackcontrollers/{system_id}/")
    assert resp.status == 200, await resp.text()
    hostname: str = (await resp.json())["hostname"]
    return hostname


async def register_as(
    region: RackRegion, system_id: str, hostname: str, credential: str | None
) -> tuple[int, str]:
    """A registration under ``system_id`` with the shared secret and ``credential``."""
    headers = region.rack_auth()
    if credential is not None:
        headers[CREDENTIAL_HEADER] = credential
    resp = await region.client.post(
        REGISTER_PATH,
        headers=headers,
        json={"hostname": hostname, "url": "http://10.9.9.9:5248", "system_id": system_id},
    )
    return resp.status, await resp.text()


class TestRegion:
    """The region issues, stores (hashed) and demands each rack's credential."""

    async def test_a_new_rack_gets_its_own_credential_and_the_region_keeps_only_its_hash(
        self, region: RackRegion
    ) -> None:
        """The first reply carries a random credential; the racks row holds its SHA-256 only."""
        one = await region.register("rack1")
        two = await region.register("rack2")
        assert len(one["credential"]) >= 40
        assert one["credential"] != two["credential"]
        stored = await credential_hash_in_db(region, one["system_id"])
        assert stored == hashlib.sha256(one["credential"].encode()).hexdigest()
        again = await region.register("rack1", system_id=one["system_id"])
        assert again["credential"] is None  # it holds one: nothing new is issued

    async def test_the_shared_secret_alone_cannot_re_register_another_racks_id(
        self, region: RackRegion, log_events: Events
    ) -> None:
        """No credential or a wrong one is a 403 saying why, logged, and the row is unchanged."""
        system_id = (await region.register("rack1"))["system_id"]
        for credential, reason in ((None, "missing"), ("x" * 43, "wrong")):
            status, text = await register_as(region, system_id, "impostor", credential)
            assert status == 403
            assert f"rack {system_id} holds its own credential" in text
            assert "remove rack.json" in text
            refused = [e for e in log_events if e["event"] == "rack_credential_refused"]
            assert (refused[-1]["system_id"], refused[-1]["reason"]) == (system_id, reason)
            assert refused[-1]["log_level"] == "warning"
        assert await hostname_of(region, system_id) == "rack1"
        status, _ = await register_as(
            region, system_id, "rack1-renamed", region.credentials[system_id]
        )
        assert status == 200
        assert await hostname_of(region, system_id) == "rack1-renamed"

    async def test_status_reports_and_the_event_stream_need_the_racks_credential(
        self, region: RackRegion
    ) -> None:
        """With the shared secret only, a report and the event stream are 403; with it, fine."""
        system_id = (await region.register("rack1"))["system_id"]
        body = {"state": "failed", "snapshot_id": None, "error": "forged"}
        forged = await region.client.post(
            STATUS_PATH.format(system_id=system_id), headers=region.rack_auth(), json=body
        )
        listen = await region.client.get(events_path(system_id), headers=region.rack_auth())
        assert (forged.status, listen.status) == (403, 403)
        assert not region.hub.is_connected(system_id)
        resp = await region.report(system_id, state="idle", snapshot_id=None)
        assert resp.status == 204
        rack = await (await region.api("GET", f"/rackcontrollers/{system_id}/")).json()
        assert "forged" not in json.dumps(rack)

    async def test_a_rack_registered_before_credentials_gets_one_at_its_next_registration(
        self, region: RackRegion
    ) -> None:
        """A row without a credential still takes the rack's calls; its next registration
        issues one, which every later call then needs."""
        system_id = (await region.register("rack1"))["system_id"]
        async with region.ctx.db.write() as conn:  # as a row from before credentials
            await conn.execute("UPDATE racks SET credential_hash = NULL")
        region.credentials.clear()
        resp = await region.report(system_id, state="idle", snapshot_id=None)
        assert resp.status == 204
        reply = await region.register("rack1", system_id=system_id)
        assert reply["system_id"] == system_id
        assert reply["credential"]
        assert await credential_hash_in_db(region, system_id) is not None
        status, _ = await register_as(region, system_id, "impostor", None)
        assert status == 403


def rack_config(region: RackRegion, data_dir: Path, hostname: str) -> RackConfig:
    """A rack of ``region`` keeping its state in ``data_dir``."""
    return RackConfig(
        region_urls=(str(region.client.make_url("")).rstrip("/"),),
        secret=region.hub.secret,
        data_dir=data_dir,
        listen="127.0.0.1:5248",
        hostname=hostname,
    )


class TestRack:
    """The rack keeps its credential private and sends it; an impostor is refused."""

    @pytest.mark.usefixtures("umask_022")
    async def test_a_rack_keeps_its_credential_0600_and_re_registers_with_it(
        self, region: RackRegion, tmp_path: Path
    ) -> None:
        """rack.json holds the issued credential at mode 0600; after a restart the rack
        registers under its id again, and its status reaches the region."""
        config = rack_config(region, tmp_path / "rack", "rack-a")
        async with open_rack(config) as rack:
            await rack.link.register_once()
            system_id = rack.pull.identity.system_id
        assert system_id is not None
        saved = json.loads((tmp_path / "rack" / RACK_FILE).read_text())
        assert saved["credential"]
        assert stat.S_IMODE((tmp_path / "rack" / RACK_FILE).stat().st_mode) == 0o600
        assert await credential_hash_in_db(region, system_id) == (
            hashlib.sha256(saved["credential"].encode()).hexdigest()
        )
        async with open_rack(config) as restarted:
            await restarted.link.register_once()
            await restarted.pull.client.report(
                system_id, restarted.pull.status.status, credential=saved["credential"]
            )
        assert restarted.link.state == "connected"
        assert restarted.pull.identity.system_id == system_id

    async def test_a_rack_claiming_another_racks_id_without_its_credential_is_refused(
        self, region: RackRegion, tmp_path: Path, log_events: Events
    ) -> None:
        """A second rack given the first one's system_id (shared secret, no credential) gets
        the region's 403 words as its refusal; the region's row keeps the first hostname."""
        async with open_rack(rack_config(region, tmp_path / "a", "rack-a")) as rack:
            await rack.link.register_once()
            system_id = rack.pull.identity.system_id
        assert system_id is not None
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / RACK_FILE).write_text(json.dumps({"system_id": system_id}))
        async with open_rack(rack_config(region, tmp_path / "b", "impostor")) as impostor:
            with pytest.raises(RegistrationRefusedError) as refused:
                await impostor.link.register_once()
        assert refused.value.status == 403
        assert impostor.link.state == "refused"
        assert impostor.link.problem is not None
        assert "own credential" in impostor.link.problem
        events = [e for e in log_events if e["event"] == "registration_refused"]
        assert len(events) == 1
        assert f"rack {system_id} holds its own credential" in events[0]["error"]
        assert await hostname_of(region, system_id) == "rack-a"
