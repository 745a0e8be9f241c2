"""Importer.republish: a republish asked for while another one runs is not dropped."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient

from region.images.importer import Importer
from tests.integration.region.rack_harness import start_region


async def test_a_republish_during_another_is_run_after_it_not_dropped(
    data_dir: Path,
    aiohttp_client: AiohttpClient,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """The second of two overlapping republishes returns True and the stream is published
    once more after the first (peer sync's republish after its fetch is never lost)."""
    region = await start_region(data_dir, aiohttp_client)
    importer = region.ctx.importer
    assert isinstance(importer, Importer)
    before = sum(e["event"] == "stream_republish" for e in log_events)
    both = await asyncio.gather(
        importer.republish(reason="first"), importer.republish(reason="second")
    )
    assert list(both) == [True, True]
    assert sum(e["event"] == "stream_republish" for e in log_events) == before + 2
    assert not importer.running_here()


async def test_a_republish_is_no_import_and_an_import_asked_for_meanwhile_runs_after_it(
    data_dir: Path,
    aiohttp_client: AiohttpClient,
    log_events: list[MutableMapping[str, Any]],
) -> None:
    """While the stream is republished the region is not importing (peer sync does not wait),
    and an import started meanwhile is not skipped: it runs once the republish is done."""
    region = await start_region(data_dir, aiohttp_client)
    importer = region.ctx.importer
    assert isinstance(importer, Importer)
    imports = sum(e["event"] == "import_finished" for e in log_events)

    async def meanwhile() -> tuple[bool, bool]:  # runs while the republish holds the lock
        return importer.running_here(), importer.start(reason="test")

    published, (running, started) = await asyncio.gather(
        importer.republish(reason="first"), meanwhile()
    )
    assert (published, running, started) == (True, False, True)
    await importer.wait_idle()
    assert sum(e["event"] == "import_finished" for e in log_events) == imports + 1
    assert not [e for e in log_events if e["event"] == "import_skipped"]
