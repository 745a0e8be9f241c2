"""Temp files beside a target fit in one path segment however long the target's name is."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from common.storage.atomic import temp_name, write_atomic
from common.storage.blobstore import BlobStore


def test_a_temp_name_beside_a_255_byte_name_fits_in_255_bytes() -> None:
    """The target's name is cut (by bytes, also mid-character) so the temp name stays short."""
    for name in ("k" * 255, "é" * 127, "squashfs"):
        made = temp_name(name, ".link")
        assert made.startswith(".")
        assert made.endswith(".link")
        assert len(os.fsencode(made)) <= 255
    assert temp_name("squashfs", ".tmp").startswith(".squashfs.")


async def test_writing_and_linking_a_file_with_a_255_byte_name_work(tmp_path: Path) -> None:
    """write_atomic and BlobStore.link_into succeed for the longest name a file system takes."""
    name = "n" * 255
    await asyncio.to_thread(write_atomic, tmp_path / "a" / name, b"data")
    store = BlobStore(tmp_path / "store")
    sha256 = await store.ingest_bytes(b"blob")
    await store.link_into(sha256, tmp_path / "b" / name)
    assert await asyncio.to_thread((tmp_path / "a" / name).read_bytes) == b"data"
    assert await asyncio.to_thread((tmp_path / "b" / name).read_bytes) == b"blob"
    leftovers = await asyncio.to_thread(lambda: [*tmp_path.glob("[ab]/.*")])
    assert leftovers == []
