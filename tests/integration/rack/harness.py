"""Helpers for rack integration tests: configs and the region's published files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp

from common.rackproto import STREAM_INDEX, STREAM_PREFIX
from rack.config import RackConfig
from simplestreams import flatten, parse_index, parse_products
from tests.fakes.region import FakeRegion


def rack_config(fake: FakeRegion, data_dir: Path, **changes: object) -> RackConfig:
    """A rack configured for ``fake`` with its data in ``data_dir``."""
    settings: dict[str, object] = {
        "region_urls": (fake.url,),
        "secret": fake.secret,
        "data_dir": data_dir,
        "listen": "127.0.0.1:5248",
        "hostname": "rack-under-test",
        "concurrency": 4,
    }
    settings.update(changes)
    return RackConfig(**settings)  # type: ignore[arg-type]


async def published_files(region_url: str) -> dict[str, str]:
    """Stream path → sha256 of the newest version of every product the region publishes."""
    async with aiohttp.ClientSession() as session:
        async with session.get(region_url + STREAM_INDEX.replace(".sjson", ".json")) as resp:
            index = parse_index(await resp.read())
        files: dict[str, str] = {}
        for entry in index.entries.values():
            assert entry.path is not None
            async with session.get(f"{region_url}{STREAM_PREFIX}/{entry.path}") as resp:
                products = parse_products(await resp.read())
            files |= {i.path: i.sha256 for i in flatten(products) if i.path and i.sha256}
        return files


def sha256_of(path: Path) -> str:
    """The sha256 of the file at ``path``."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
