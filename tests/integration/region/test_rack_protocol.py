"""The rack protocol on the real region: secret, registration, status reports, event stream."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from common.rackproto import REGISTER_PATH, STATUS_PATH, STREAM_INDEX
from common.trust.keyrings import aload_keyring
from region.db import imports as repo_import
from region.db.imports import WantedFile, WantedSet
from region.images.importer import Importer
from tests.fakes.waiting import eventually
from tests.integration.region.rack_harness import (
    RackRegion,
    events_path,
    open_events,
    start_region,
)

Events = list[MutableMapping[str, Any]]


async def publish_new_image(region: RackRegion, release: str) -> str:
    """Give the region a complete image and republish; the new snapshot id."""
    data = f"{release} squashfs".encode()
    sha256 = await region.ctx.store.ingest_bytes(data)
    await repo_import.write_wanted(
        region.ctx.db,
        [
            WantedSet(
                name=f"ubuntu/{release}",
                architecture="amd64/generic",
                kflavor="generic",
                bootloader_type=None,
                rolling=False,
                extra={"title": release},
                version="20250718",
                label="stable",
                files=(
                    WantedFile(
                        filename="squashfs", filetype="squashfs", sha256=sha256, size=len(data)
                    ),
                ),
            )
        ],
        {sha256: len(data)},
    )
    assert isinstance(region.ctx.importer, Importer)
    assert await region.ctx.importer.republish(reason="test")
    snapshot = await region.ctx.publisher.current_id()
    assert snapshot is not None
    return snapshot


class TestSecret:
    """Every protocol call needs the region's rack secret."""

    async def test_the_secret_file_is_private_hex_made_at_first_start(
        self, region: RackRegion, data_dir: Path
    ) -> None:
        """``<data_dir>/rack-secret`` is mode 0600 and holds the hub's 64-hex secret."""
        path = data_dir / "rack-secret"
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.read_text().strip() == region.hub.secret
        assert re.fullmatch(r"[0-9a-f]{64}", region.hub.secret)

    async def test_a_wrong_secret_is_refused_with_401_text_and_logged(
        self, region: RackRegion, log_events: Events
    ) -> None:
        """A wrong Bearer token gets a plain-text 401 and a rack_auth_failed event."""
        resp = await region.client.post(
            REGISTER_PATH,
            headers=region.rack_auth("0" * 64),
            json={"hostname": "r", "url": "http://r:5248"},
        )
        assert resp.status == 401
        assert resp.content_type == "text/plain"
        assert await resp.text() == "Authorization Error: wrong rack secret."
        assert [e["reason"] for e in log_events if e["event"] == "rack_auth_failed"] == [
            "wrong_secret"
        ]

    @pytest.mark.parametrize("path", [REGISTER_PATH, STATUS_PATH.format(system_id="abc123")])
    async def test_a_missing_secret_is_refused_on_every_call(
        self, region: RackRegion, path: str
    ) -> None:
        """No Authorization header (or an OAuth one) is a 401 before anything else."""
        for headers in ({}, {"Authorization": "OAuth oauth_token=x"}):
            resp = await region.client.post(path, headers=headers, json={})
            assert resp.status == 401
            assert (await resp.text()).startswith("Authorization Required")

    async def test_the_event_stream_needs_the_secret_too(self, region: RackRegion) -> None:
        """Opening a rack's event stream with a wrong secret is a 401."""
        system_id = (await region.register())["system_id"]
        resp = await region.client.get(events_path(system_id), headers=region.rack_auth("x" * 64))
        assert resp.status == 401


class TestRegistration:
    """Racks register, keep their id, and get the region's key."""

    async def test_a_new_rack_gets_an_id_and_the_region_key(
        self, region: RackRegion, log_events: Events
    ) -> None:
        """The reply has a 6-character id, the region's keyring and fingerprint, the index."""
        reply = await region.register("rack1")
        keyring = await aload_keyring(base64.b64decode(reply["region_keyring"]))
        assert re.fullmatch(r"[a-z0-9]{6}", reply["system_id"])
        assert reply["region_fingerprint"] == region.ctx.region_key.fingerprint
        assert keyring.fingerprints == (region.ctx.region_key.fingerprint,)
        assert reply["stream_index"] == STREAM_INDEX
        (event,) = [e for e in log_events if e["event"] == "rack_registered"]
        assert event["new"] is True
        assert event["system_id"] == reply["system_id"]

    async def test_re_registering_keeps_the_id_and_an_unknown_id_gets_a_new_one(
        self, region: RackRegion
    ) -> None:
        """A known id comes back with the new hostname; an id the region never gave is replaced."""
        first = (await region.register("rack1"))["system_id"]
        again = (await region.register("rack1-renamed", system_id=first))["system_id"]
        other = (await region.register("rack2", system_id="zzzzzz"))["system_id"]
        resp = await region.api("GET", f"/rackcontrollers/{first}/")
        assert again == first
        assert other not in (first, "zzzzzz")
        assert (await resp.json())["hostname"] == "rack1-renamed"

    async def test_a_registration_survives_a_region_restart(
        self, data_dir: Path, aiohttp_client: AiohttpClient
    ) -> None:
        """After a restart on the same data dir the rack keeps its id, and the secret is kept."""
        region = await start_region(data_dir, aiohttp_client)
        system_id = (await region.register("rack1"))["system_id"]
        secret = region.hub.secret
        await region.client.close()

        restarted = await start_region(data_dir, aiohttp_client)
        restarted.credentials.update(region.credentials)  # what the rack kept
        reply = await restarted.register("rack1", system_id=system_id)
        listed = await (await restarted.api("GET", "/rackcontrollers/")).json()
        assert restarted.hub.secret == secret
        assert reply["system_id"] == system_id
        assert [r["system_id"] for r in listed] == [system_id]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"url": "http://r:5248"}, "hostname"),
            ({"hostname": "r", "url": "ftp://r"}, "url"),
            ({"hostname": "r", "url": "http://r:5248", "system_id": 7}, "system_id"),
        ],
    )
    async def test_a_bad_registration_is_a_400_naming_the_field(
        self, region: RackRegion, body: dict[str, Any], field: str
    ) -> None:
        """Each malformed field is reported by name, MAAS-style ``{field: [message]}``."""
        resp = await region.client.post(REGISTER_PATH, headers=region.rack_auth(), json=body)
        assert resp.status == 400
        assert list(await resp.json()) == [field]

    async def test_a_body_that_is_not_a_json_object_is_a_400(self, region: RackRegion) -> None:
        """Garbage and a JSON list are both refused under ``__all__``."""
        for data in (b"not json", b"[1, 2]"):
            resp = await region.client.post(REGISTER_PATH, headers=region.rack_auth(), data=data)
            assert resp.status == 400
            assert await resp.json() == {"__all__": ["The body must be a JSON object."]}


class TestStatus:
    """Racks report their state after each sync attempt."""

    async def test_a_report_is_stored_and_logged(
        self, region: RackRegion, log_events: Events
    ) -> None:
        """A valid report answers 204, is logged, and shows as last_image_sync in MAAS format."""
        system_id = (await region.register())["system_id"]
        resp = await region.report(
            system_id,
            state="synced",
            snapshot_id="s1",
            images=[{"name": "ubuntu/noble", "architecture": "amd64", "subarches": ["generic"]}],
            last_sync="2026-01-02T03:04:05+00:00",
        )
        rack = await (await region.api("GET", f"/rackcontrollers/{system_id}/")).json()
        assert resp.status == 204
        assert rack["last_image_sync"] == "2026-01-02T03:04:05.000"
        assert rack["bootsync"]["state"] == "synced"
        assert any(
            e["event"] == "rack_status_reported" and e["state"] == "synced" for e in log_events
        )

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"state": "asleep", "snapshot_id": None}, "state"),
            ({"state": "idle", "snapshot_id": None, "images": {}}, "images"),
            ({"state": "idle", "snapshot_id": None, "images": [{"name": "x"}]}, "images[0]"),
            ({"state": "idle", "snapshot_id": 5}, "snapshot_id"),
            ({"state": "synced", "snapshot_id": "s", "last_sync": "yesterday"}, "last_sync"),
        ],
    )
    async def test_a_bad_report_is_a_400_naming_the_field(
        self, region: RackRegion, body: dict[str, Any], field: str
    ) -> None:
        """Each malformed field of a RackStatus is reported by name."""
        system_id = (await region.register())["system_id"]
        resp = await region.report(system_id, **body)
        assert resp.status == 400
        assert list(await resp.json()) == [field]

    async def test_a_report_for_an_unknown_rack_is_a_404(self, region: RackRegion) -> None:
        """Status and events for an id the region never gave answer MAAS's 404 text."""
        resp = await region.report("nosuch", state="idle", snapshot_id=None)
        events = await region.client.get(events_path("nosuch"), headers=region.rack_auth())
        assert resp.status == 404
        assert await resp.text() == "No RackController matches the given query."
        assert events.status == 404


class TestEvents:
    """The region pushes news to the racks' open event streams."""

    async def test_a_new_snapshot_is_announced_to_every_connected_rack(
        self, region: RackRegion
    ) -> None:
        """Publishing a new stream sends ``event: snapshot`` with its id to both racks."""
        ids = [(await region.register(h))["system_id"] for h in ("rack1", "rack2")]
        streams = [
            await open_events(region.client, events_path(i), region.rack_auth(system_id=i))
            for i in ids
        ]
        snapshot = await publish_new_image(region, "noble")
        for stream in streams:
            assert await stream.next_event() == ("snapshot", {"id": snapshot})
            stream.resp.close()

    async def test_import_boot_images_reaches_all_racks_or_just_the_one_named(
        self, region: RackRegion
    ) -> None:
        """The all-racks op reaches both streams; the per-rack op only its own."""
        ids = [(await region.register(h))["system_id"] for h in ("rack1", "rack2")]
        one, two = [
            await open_events(region.client, events_path(i), region.rack_auth(system_id=i))
            for i in ids
        ]
        resp = await region.api("POST", "/rackcontrollers/", op="import_boot_images")
        assert await resp.text() == "Import of boot images started on all rack controllers"
        assert await one.next_event() == ("import", {})
        assert await two.next_event() == ("import", {})

        resp = await region.api("POST", f"/rackcontrollers/{ids[1]}/", op="import_boot_images")
        assert await resp.text() == "Import of boot images started on rack2"
        snapshot = await publish_new_image(region, "jammy")
        assert await two.next_event() == ("import", {})
        # rack1 got no import: its next event is the snapshot published after the op.
        assert await one.next_event() == ("snapshot", {"id": snapshot})
        one.resp.close()
        two.resp.close()

    async def test_keepalives_flow_and_a_closed_stream_disconnects_the_rack(
        self, region: RackRegion
    ) -> None:
        """Quiet streams get keepalive comments; once the rack hangs up it is not connected."""
        region.hub.keepalive_s = 0.05
        system_id = (await region.register())["system_id"]
        stream = await open_events(
            region.client, events_path(system_id), region.rack_auth(system_id=system_id)
        )
        assert region.hub.is_connected(system_id)
        assert (await region.boot_images(system_id))["connected"] is True
        async with asyncio.timeout(10):
            assert await stream.resp.content.readline() == b": keepalive\n"
        stream.resp.close()
        await eventually(lambda: not region.hub.is_connected(system_id), "the disconnect")
        assert (await region.boot_images(system_id))["connected"] is False

    async def test_region_shutdown_ends_open_streams_promptly(self, region: RackRegion) -> None:
        """Stopping the region ends every stream (no 60 s shutdown wait) and refuses new ones."""
        system_id = (await region.register())["system_id"]
        url = str(region.client.make_url(events_path(system_id)))
        async with aiohttp.ClientSession() as session:
            stream = await open_events(session, url, region.rack_auth(system_id=system_id))
            async with asyncio.timeout(10):
                await region.client.server.close()
            assert await stream.read_to_end() == b""
        assert region.hub.closed
        assert not region.hub.is_connected(system_id)
