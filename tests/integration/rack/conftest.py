"""A real region process with a real published stream, fronted by a FakeRegion, for rack tests.

A test module may set ``FILE_SIZE`` (bytes of each large sample file; default 64 KiB)
of the integration ``stream`` the region imports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.daemons import DaemonProcess
from tests.fakes.region import FakeRegion


@pytest.fixture
async def region(region: DaemonProcess) -> DaemonProcess:
    """The integration ``region`` after its start-up import: its stream is published."""
    summary = (await region.wait_for_event("import_finished"))[0]
    assert summary["outcome"] == "ok", summary
    return region


@pytest.fixture
async def fake_region(region: DaemonProcess) -> AsyncIterator[FakeRegion]:
    """A FakeRegion speaking the rack protocol, its stream proxied to ``region``."""
    fake = FakeRegion(stream_origin=region.url)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
