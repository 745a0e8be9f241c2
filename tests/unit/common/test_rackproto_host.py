"""The host facts a rack sends at registration: round trip, old racks, and refusals."""

from __future__ import annotations

import re
from typing import Any

import pytest

from common.rackproto import HostFacts, HostInterface, Registration, registration_from_json, to_json

FACTS = HostFacts(
    architecture="amd64",
    cpu_count=8,
    cpu_speed=2400,
    memory=16000,
    osystem="ubuntu",
    distro_series="noble",
    version="1.2.3",
    interfaces=[
        HostInterface(
            name="eth0",
            mac_address="52:54:00:12:34:56",
            mtu=1500,
            enabled=True,
            type="physical",
            addresses=["10.0.0.5/24", "fd00::5/64"],
        )
    ],
)


def registration(**host: Any) -> dict[str, Any]:
    """A registration body whose host facts are FACTS with ``host`` replacing fields."""
    body = to_json(Registration(hostname="rack1", url="http://10.0.0.5:5248", host=FACTS))
    body["host"].update(host)
    return body


def test_host_facts_round_trip_through_json() -> None:
    """What the rack sends is what the region parses, interfaces included."""
    parsed = registration_from_json(registration())
    assert parsed.host == FACTS


def test_a_registration_without_host_facts_still_parses() -> None:
    """An older rack sends no ``host``: the registration is accepted with host None."""
    parsed = registration_from_json({"hostname": "rack1", "url": "http://r:5248"})
    assert parsed.host is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cpu_count": -1}, "host.cpu_count"),
        ({"memory": "lots"}, "host.memory"),
        ({"cpu_speed": True}, "host.cpu_speed"),
        ({"architecture": "x" * 300}, "host.architecture"),
        ({"osystem": 5}, "host.osystem"),
        ({"interfaces": "eth0"}, "host.interfaces"),
        ({"interfaces": [{"name": "eth0"}]}, "host.interfaces[0].mac_address"),
        (
            {"interfaces": [{**to_json(FACTS)["interfaces"][0], "addresses": ["not-an-ip"]}]},
            "host.interfaces[0].addresses",
        ),
        ({"interfaces": [to_json(FACTS)["interfaces"][0]] * 300}, "host.interfaces"),
    ],
)
def test_bad_host_facts_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    """Each malformed fact is a ValueError whose message starts with the field's path."""
    with pytest.raises(ValueError, match="^" + re.escape(field) + ":"):
        registration_from_json(registration(**change))


def test_host_that_is_not_an_object_is_refused() -> None:
    """``host`` must be an object or absent."""
    body = {"hostname": "rack1", "url": "http://r:5248", "host": ["amd64"]}
    with pytest.raises(ValueError, match=r"^host:"):
        registration_from_json(body)
