"""PartialWriter on a real file: resuming, cutting an untrusted tail, writing without hashing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from common.errors import StoreError
from common.transfer.download import PartialWriter

HEAD = b"verified bytes " * 1000
TAIL = b"bytes of a cut-off chunk"
MORE = b"the next chunk " * 5000


async def write_all(writer: PartialWriter, *chunks: bytes, durable: bool = False) -> None:
    """Write ``chunks``, flush, close."""
    for chunk in chunks:
        await writer.write(chunk)
    await writer.flush(durable=durable)
    await writer.close()


async def test_open_resumes_and_hashes_what_is_there(tmp_path: Path) -> None:
    """A reopened file reports its length, and the digest covers old and new bytes."""
    path = tmp_path / "blob.part"
    path.write_bytes(HEAD)
    writer = PartialWriter(path, batch_size=4096)
    assert await writer.open() == len(HEAD)
    await write_all(writer, MORE[:7000], MORE[7000:])
    assert path.read_bytes() == HEAD + MORE
    assert writer.hexdigest() == hashlib.sha256(HEAD + MORE).hexdigest()


async def test_keep_cuts_the_untrusted_tail_before_hashing(tmp_path: Path) -> None:
    """open(keep=n) drops bytes past n; the digest is of the kept bytes and the new ones."""
    path = tmp_path / "upload.part"
    path.write_bytes(HEAD + TAIL)
    writer = PartialWriter(path)
    assert await writer.open(keep=len(HEAD)) == len(HEAD)
    await write_all(writer, MORE, durable=True)
    assert path.read_bytes() == HEAD + MORE
    assert writer.hexdigest() == hashlib.sha256(HEAD + MORE).hexdigest()


async def test_keep_beyond_the_end_leaves_the_file_as_it_is(tmp_path: Path) -> None:
    """A keep larger than the file neither extends nor cuts it."""
    path = tmp_path / "short.part"
    path.write_bytes(HEAD)
    writer = PartialWriter(path)
    assert await writer.open(keep=len(HEAD) + 100) == len(HEAD)
    await writer.close()
    assert path.read_bytes() == HEAD


async def test_without_hashing_sizes_still_count_and_no_digest_is_claimed(tmp_path: Path) -> None:
    """hashing=False gives the file's length on open and refuses hexdigest."""
    path = tmp_path / "chunked.part"
    path.write_bytes(HEAD + TAIL)
    writer = PartialWriter(path, hashing=False)
    assert await writer.open(keep=len(HEAD)) == len(HEAD)
    await write_all(writer, MORE)
    assert writer.size == len(HEAD + MORE) == path.stat().st_size
    with pytest.raises(RuntimeError, match="without hashing"):
        writer.hexdigest()


async def test_a_file_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    """A directory in the file's place raises StoreError carrying the OSError as its cause."""
    path = tmp_path / "taken"
    path.mkdir()
    writer = PartialWriter(path)
    with pytest.raises(StoreError) as caught:
        await writer.open()
    assert isinstance(caught.value.__cause__, IsADirectoryError)
