"""MAAS's rack-controller calls on the real region: objects, permissions, list-boot-images."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from common.rackproto import REGISTER_PATH
from region.db import sources as repo_sources
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually
from tests.integration.region.rack_harness import (
    RackRegion,
    events_path,
    open_events,
)

NOBLE = {"name": "ubuntu/noble", "architecture": "amd64", "subarches": ["ga-24.04", "generic"]}


@pytest.fixture
async def rack(region: RackRegion) -> AsyncIterator[str]:
    """A registered rack holding its event stream open; its system_id."""
    system_id = (await region.register("rack1", url="http://10.0.0.5:5248"))["system_id"]
    stream = await open_events(
        region.client, events_path(system_id), region.rack_auth(system_id=system_id)
    )
    yield system_id
    stream.resp.close()


async def current(region: RackRegion) -> str:
    """The region's current snapshot id."""
    snapshot = await region.ctx.publisher.current_id()
    assert snapshot is not None
    return snapshot


class TestRead:
    """Rack-controller objects in MAAS's shape."""

    async def test_read_lists_racks_with_maas_fields(self, region: RackRegion, rack: str) -> None:
        """Any user sees system_id, hostname, node_type 2, resource_uri and last_image_sync."""
        resp = await region.api("GET", "/rackcontrollers/", key=region.user)
        (listed,) = await resp.json()
        assert resp.status == 200
        assert {
            k: listed[k]
            for k in (
                "system_id",
                "hostname",
                "fqdn",
                "node_type",
                "node_type_name",
                "resource_uri",
                "ip_addresses",
                "last_image_sync",
            )
        } == {
            "system_id": rack,
            "hostname": "rack1",
            "fqdn": "rack1.maas",
            "node_type": 2,
            "node_type_name": "Rack controller",
            "resource_uri": f"/MAAS/api/2.0/rackcontrollers/{rack}/",
            "ip_addresses": ["10.0.0.5"],
            "last_image_sync": None,
        }
        assert listed["bootsync"]["connected"] is True

    async def test_one_rack_reads_like_its_list_entry(self, region: RackRegion, rack: str) -> None:
        """GET {system_id} answers the same object the list holds."""
        one = await (await region.api("GET", f"/rackcontrollers/{rack}/")).json()
        listed = await (await region.api("GET", "/rackcontrollers/")).json()
        assert one == listed[0]

    async def test_unknown_ids_are_404_with_maas_text(self, region: RackRegion) -> None:
        """Read, list_boot_images and import_boot_images of an unknown id are all 404."""
        for method, op in (
            ("GET", None),
            ("GET", "list_boot_images"),
            ("POST", "import_boot_images"),
        ):
            resp = await region.api(method, "/rackcontrollers/nosuch/", op=op)
            assert resp.status == 404
            assert await resp.text() == "No RackController matches the given query."

    async def test_anonymous_calls_are_401(self, region: RackRegion) -> None:
        """Without an API key the rack-controller list is refused."""
        resp = await region.client.get("/MAAS/api/2.0/rackcontrollers/")
        assert resp.status == 401


class TestAdminOnly:
    """Only admins may call the rack-controller image ops, as in MAAS."""

    @pytest.mark.parametrize(
        ("method", "path", "op"),
        [
            ("POST", "/rackcontrollers/", "import_boot_images"),
            ("POST", "/rackcontrollers/{id}/", "import_boot_images"),
            ("GET", "/rackcontrollers/{id}/", "list_boot_images"),
        ],
    )
    async def test_a_plain_user_gets_maas_403_text(
        self, region: RackRegion, rack: str, method: str, path: str, op: str
    ) -> None:
        """A non-admin key is refused with ``This method is reserved for admin users.``"""
        resp = await region.api(method, path.format(id=rack), key=region.user, op=op)
        assert resp.status == 403
        assert await resp.text() == "This method is reserved for admin users."

    async def test_an_unknown_op_is_maas_400(self, region: RackRegion) -> None:
        """An op the handler lacks is ``Unrecognised signature``."""
        resp = await region.api("GET", "/rackcontrollers/", op="list_boot_images")
        assert resp.status == 400
        assert await resp.text() == "Unrecognised signature: method=GET op=list_boot_images"


class TestListBootImages:
    """``status`` follows the rack's report, its connection and the region's import."""

    async def test_a_rack_that_never_reported_is_unknown(
        self, region: RackRegion, rack: str
    ) -> None:
        """Connected but silent: no images, status unknown."""
        assert await region.boot_images(rack) == {
            "images": [],
            "connected": True,
            "status": "unknown",
        }

    async def test_a_disconnected_rack_is_unknown_without_images(self, region: RackRegion) -> None:
        """A rack that reported but holds no stream is unknown, images [], connected false."""
        system_id = (await region.register())["system_id"]
        await region.report(
            system_id, state="synced", snapshot_id=await current(region), images=[NOBLE]
        )
        assert await region.boot_images(system_id) == {
            "images": [],
            "connected": False,
            "status": "unknown",
        }

    async def test_a_rack_serving_the_current_snapshot_is_synced(
        self, region: RackRegion, rack: str
    ) -> None:
        """The reported snapshot equals the region's current one: synced, with its images."""
        await region.report(
            rack,
            state="synced",
            snapshot_id=await current(region),
            images=[NOBLE],
            last_sync="2026-01-02T03:04:05Z",
        )
        assert await region.boot_images(rack) == {
            "images": [NOBLE],
            "connected": True,
            "status": "synced",
        }

    async def test_a_pulling_rack_is_syncing(self, region: RackRegion, rack: str) -> None:
        """A rack that reports ``syncing`` is syncing whatever snapshot it serves."""
        await region.report(rack, state="syncing", snapshot_id="older", images=[NOBLE])
        assert (await region.boot_images(rack))["status"] == "syncing"

    @pytest.mark.parametrize("state", ["synced", "failed", "idle"])
    async def test_a_rack_on_another_snapshot_is_out_of_sync(
        self, region: RackRegion, rack: str, state: str
    ) -> None:
        """Not pulling and not serving the current snapshot: out-of-sync."""
        await region.report(
            rack,
            state=state,
            snapshot_id="older",
            images=[NOBLE],
            error="disk full" if state == "failed" else None,
        )
        data = await region.boot_images(rack)
        assert data == {"images": [NOBLE], "connected": True, "status": "out-of-sync"}

    async def test_while_the_region_imports_the_rack_is_region_importing(
        self, region: RackRegion, rack: str, fake_upstream: FakeUpstream
    ) -> None:
        """A region import in progress (stalled on its source) wins over the rack's report."""
        fake_upstream.add_file("streams/v1/index.sjson", b"-----BEGIN PGP" + b" " * 4096)
        fake_upstream.stall("streams/v1/index.sjson", after_bytes=8, seconds=60)
        keyring = region.ctx.data_dir / "region-keyring.gpg"  # any real keyring will do
        await repo_sources.create_source(
            region.ctx.db, url=fake_upstream.url(""), keyring_filename=str(keyring)
        )
        await region.report(rack, state="synced", snapshot_id=await current(region), images=[NOBLE])
        assert region.ctx.importer.start(reason="test")
        await eventually(
            lambda: fake_upstream.requests_for("streams/v1/index.sjson"),
            "the import to reach its source",
        )
        try:
            assert await region.boot_images(rack) == {
                "images": [NOBLE],
                "connected": True,
                "status": "region-importing",
            }
        finally:
            await region.ctx.importer.stop()
        assert (await region.boot_images(rack))["status"] == "synced"


HOST = {
    "architecture": "arm64",
    "cpu_count": 4,
    "cpu_speed": 2000,
    "memory": 8192,
    "osystem": "ubuntu",
    "distro_series": "noble",
    "version": "9.9.9",
    "interfaces": [
        {
            "name": "eth0",
            "mac_address": "52:54:00:aa:bb:cc",
            "mtu": 9000,
            "enabled": True,
            "type": "physical",
            "addresses": ["10.0.0.5/24", "fd00::5/64"],
        },
        {
            "name": "br0",
            "mac_address": "52:54:00:dd:ee:ff",
            "mtu": 1500,
            "enabled": False,
            "type": "bridge",
            "addresses": [],
        },
    ],
}


class TestHostFields:
    """A rack's object carries MAAS's rack-controller fields, with what the rack reported."""

    async def test_reported_host_facts_fill_maas_fields(self, region: RackRegion) -> None:
        """architecture, cpu_count, memory, OS, interfaces and addresses are the rack's own."""
        resp = await region.client.post(
            REGISTER_PATH,
            headers=region.rack_auth(),
            json={"hostname": "rack9", "url": "http://10.0.0.5:5248", "host": HOST},
        )
        assert resp.status == 200, await resp.text()
        system_id = (await resp.json())["system_id"]
        rack = await (await region.api("GET", f"/rackcontrollers/{system_id}/")).json()
        assert {k: rack[k] for k in MAAS_FIELDS} == {
            "architecture": "arm64/generic",
            "cpu_count": 4,
            "cpu_speed": 2000,
            "memory": 8192,
            "osystem": "ubuntu",
            "distro_series": "noble",
            "version": "9.9.9",
            "ip_addresses": ["10.0.0.5", "fd00::5"],
            "power_type": "manual",
            "power_state": "unknown",
            "node_type": 2,
            "node_type_name": "Rack controller",
            "hostname": "rack9",
            "fqdn": "rack9.maas",
            "tag_names": [],
            "swap_size": None,
        }
        assert rack["zone"]["name"] == "default"
        assert rack["domain"]["name"] == "maas"
        assert rack["pool"] is None
        eth0, br0 = rack["interface_set"]
        assert (eth0["name"], eth0["mac_address"], eth0["effective_mtu"], eth0["type"]) == (
            "eth0",
            "52:54:00:aa:bb:cc",
            9000,
            "physical",
        )
        assert [link["ip_address"] for link in eth0["links"]] == ["10.0.0.5", "fd00::5"]
        assert (br0["type"], br0["enabled"], br0["links"]) == ("bridge", False, [])
        assert eth0["resource_uri"] == f"/MAAS/api/2.0/nodes/{system_id}/interfaces/{eth0['id']}/"
        assert {s["name"] for s in rack["service_set"]} == {"rackd", "http"}

    async def test_a_rack_without_host_facts_has_maas_defaults(
        self, region: RackRegion, rack: str
    ) -> None:
        """An older rack: empty OS, zero counts, its URL host as address, still every field."""
        one = await (await region.api("GET", f"/rackcontrollers/{rack}/")).json()
        assert {k: one[k] for k in ("architecture", "cpu_count", "memory", "osystem")} == {
            "architecture": None,
            "cpu_count": 0,
            "memory": 0,
            "osystem": "",
        }
        assert one["ip_addresses"] == ["10.0.0.5"]
        assert one["interface_set"] == []
        assert set(MAAS_FIELDS) <= set(one)


MAAS_FIELDS = (
    "architecture",
    "cpu_count",
    "cpu_speed",
    "memory",
    "osystem",
    "distro_series",
    "version",
    "ip_addresses",
    "power_type",
    "power_state",
    "node_type",
    "node_type_name",
    "hostname",
    "fqdn",
    "tag_names",
    "swap_size",
)
