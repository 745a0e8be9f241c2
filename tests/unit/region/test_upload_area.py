"""The upload area on a real blob store: chunked partials and staged bodies via PartialWriter."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from common.storage.blobstore import BlobStore
from region.images.upload_area import UploadArea

IMAGE = bytes(range(256)) * 9000
SHA = hashlib.sha256(IMAGE).hexdigest()


async def chunks(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    """``pieces`` as a request body would arrive."""
    for piece in pieces:
        yield piece


async def failing(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    """``pieces``, then the connection drops."""
    for piece in pieces:
        yield piece
    raise ConnectionResetError("client went away")


@pytest.fixture
def area(tmp_path: Path) -> UploadArea:
    """An upload area on an empty store."""
    return UploadArea(BlobStore(tmp_path / "store"))


async def test_chunks_append_and_the_last_one_carries_the_whole_digest(area: UploadArea) -> None:
    """Intermediate chunks are only written; the last one answers the sha256 of every byte."""
    third = len(IMAGE) // 3
    first = await area.append(7, 0, chunks([IMAGE[:third]]))
    assert (first.received, first.sha256) == (third, None)
    second = await area.append(7, third, chunks([IMAGE[third : 2 * third]]))
    assert second.sha256 is None
    last = await area.append(7, 2 * third, chunks([IMAGE[2 * third :]]), last=True)
    assert (last.received, last.sha256) == (len(IMAGE) - 2 * third, SHA)
    await area.commit(7, SHA, len(IMAGE))
    assert await area.store.has(SHA, len(IMAGE))
    assert await area.partial_size(7) == 0


async def test_a_chunk_cut_short_leaves_a_tail_the_next_chunk_cuts(area: UploadArea) -> None:
    """Bytes of a broken chunk stay past the trusted offset; appending at it replaces them."""
    half = len(IMAGE) // 2
    await area.append(3, 0, chunks([IMAGE[:half]]))
    with pytest.raises(ConnectionResetError):
        await area.append(3, half, failing([b"\xee" * (1 << 16)] * 48))  # 3 MiB: batches land
    assert await area.partial_size(3) > half
    last = await area.append(3, half, chunks([IMAGE[half:]]), last=True)
    assert last.sha256 == SHA
    assert area.partial_path(3).read_bytes() == IMAGE


async def test_staging_hashes_on_the_way_and_commits_into_the_store(area: UploadArea) -> None:
    """stage() measures sha256 and size; commit_staged stores the blob and leaves no temp."""
    staged = await area.stage(chunks([IMAGE[:1000], IMAGE[1000:]]))
    assert (staged.sha256, staged.size) == (SHA, len(IMAGE))
    assert staged.path.parent == area.root
    await area.commit_staged(staged)
    assert await area.store.size_of(SHA) == len(IMAGE)
    assert list(area.root.iterdir()) == []


async def test_a_failed_stage_leaves_no_temp_file(area: UploadArea) -> None:
    """A body that breaks off while being staged raises and removes its temp file."""
    with pytest.raises(ConnectionResetError):
        await area.stage(failing([IMAGE[:4096]]))
    assert list(area.root.iterdir()) == []


async def test_sweep_removes_partials_of_files_no_longer_uploading(area: UploadArea) -> None:
    """Partials of ids not live go; a live one stays."""
    await area.append(1, 0, chunks([b"one"]))
    await area.append(2, 0, chunks([b"two"]))
    assert await area.sweep({2}) == 1
    assert (await area.partial_size(1), await area.partial_size(2)) == (0, 3)
