"""The content-addressed blob store on a real filesystem."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest

from common.errors import DigestMismatchError, InsufficientSpaceError, SizeMismatchError
from common.storage.blobstore import BlobStore, GCResult

DATA = b"a boot image, more or less\n" * 1000
SHA = hashlib.sha256(DATA).hexdigest()
OTHER = hashlib.sha256(b"other").hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    """An empty store under tmp_path."""
    return BlobStore(tmp_path / "store")


class SizedStore(BlobStore):
    """A store whose filesystem reports chosen free and total sizes."""

    def __init__(self, root: Path, free: int, total: int, reserve: int | None = None) -> None:
        super().__init__(root, reserve=reserve)
        self.fake = (free, total)

    def _disk_usage(self) -> tuple[int, int]:
        return self.fake


class TestPaths:
    def test_blobs_live_under_their_two_hex_prefix(self, store: BlobStore) -> None:
        """path_for is root/sha256/<aa>/<sha>; partials are root/tmp/<sha>.part."""
        assert store.path_for(SHA) == store.root / "sha256" / SHA[:2] / SHA
        assert store.partial_path(SHA) == store.root / "tmp" / f"{SHA}.part"

    @pytest.mark.parametrize(
        "bad", ["", SHA.upper(), SHA[:-1], SHA + "0", "g" * 64, "../" + SHA[3:]]
    )
    def test_anything_but_64_lowercase_hex_is_refused(self, store: BlobStore, bad: str) -> None:
        """A malformed sha256 raises ValueError instead of naming a path."""
        with pytest.raises(ValueError, match="sha256"):
            store.path_for(bad)
        with pytest.raises(ValueError, match="sha256"):
            store.partial_path(bad)


class TestCommit:
    async def test_commit_moves_the_temp_file_to_its_final_path(self, store: BlobStore) -> None:
        """A committed partial is at its content address, read-only, and has() sees it."""
        temp = store.partial_path(SHA)
        temp.parent.mkdir(parents=True)
        temp.write_bytes(DATA)
        final = await store.commit(SHA, len(DATA), temp)
        assert final == store.path_for(SHA)
        assert final.read_bytes() == DATA
        assert not temp.exists()
        assert final.stat().st_mode & 0o222 == 0
        assert await store.has(SHA, len(DATA))

    async def test_commit_refuses_a_wrong_size(self, store: BlobStore) -> None:
        """A temp file of the wrong size raises SizeMismatchError and nothing is stored."""
        temp = store.partial_path(SHA)
        temp.parent.mkdir(parents=True)
        temp.write_bytes(DATA[:-1])
        with pytest.raises(SizeMismatchError):
            await store.commit(SHA, len(DATA), temp)
        assert not store.path_for(SHA).exists()
        assert temp.exists()

    async def test_has_is_false_for_missing_or_wrong_sized_blobs(self, store: BlobStore) -> None:
        """has() answers from existence and size alone."""
        assert not await store.has(SHA, len(DATA))
        await store.ingest_bytes(DATA)
        assert await store.has(SHA, len(DATA))
        assert not await store.has(SHA, len(DATA) + 1)


class TestQueries:
    async def test_size_of_is_the_stored_size_or_none(self, store: BlobStore) -> None:
        """size_of answers None before the blob is stored and its byte count after."""
        assert await store.size_of(SHA) is None
        await store.ingest_bytes(DATA)
        assert await store.size_of(SHA) == len(DATA)

    async def test_held_bytes_counts_blobs_and_partials_short_of_complete(
        self, store: BlobStore
    ) -> None:
        """A stored blob counts its size; a partial its length but never all; else absent."""
        await store.ingest_bytes(DATA)
        whole = hashlib.sha256(b"whole partial").hexdigest()
        half = hashlib.sha256(b"half partial").hexdigest()
        store.partial_path(whole).write_bytes(b"x" * 10)
        store.partial_path(half).write_bytes(b"x" * 4)
        held = await store.held_bytes({SHA: len(DATA), whole: 10, half: 10, OTHER: 5})
        assert held == {SHA: len(DATA), whole: 9, half: 4}

    async def test_a_blob_of_another_size_is_not_held(self, store: BlobStore) -> None:
        """held_bytes does not count a stored blob whose size differs from the expected one."""
        await store.ingest_bytes(DATA)
        assert await store.held_bytes({SHA: len(DATA) + 1}) == {}

    def test_an_area_is_a_directory_of_the_store_but_never_its_own(self, store: BlobStore) -> None:
        """area(name) is under the root; the store's own names and path tricks are refused."""
        assert store.area("uploads") == store.root / "uploads"
        for bad in ("sha256", "tmp", "../x", "a/b", "", "Uploads"):
            with pytest.raises(ValueError, match="area"):
                store.area(bad)


class TestIngest:
    async def test_ingest_bytes_stores_at_the_digest(self, store: BlobStore) -> None:
        """ingest_bytes returns the sha256 under which the bytes now live."""
        assert await store.ingest_bytes(DATA) == SHA
        assert store.path_for(SHA).read_bytes() == DATA

    async def test_ingest_refuses_bytes_that_do_not_match_the_expected_digest(
        self, store: BlobStore
    ) -> None:
        """With an expected sha256, different bytes raise DigestMismatchError and leave no file."""
        with pytest.raises(DigestMismatchError):
            await store.ingest_bytes(DATA, sha256=OTHER)
        assert not store.path_for(OTHER).exists()
        assert not store.path_for(SHA).exists()
        assert list((store.root / "tmp").iterdir()) == []

    async def test_ingest_file_copies_a_local_file(self, store: BlobStore, tmp_path: Path) -> None:
        """ingest_file copies the source, leaving it in place, and verifies size and digest."""
        source = tmp_path / "local.img"
        source.write_bytes(DATA)
        assert await store.ingest_file(source, sha256=SHA, size=len(DATA)) == SHA
        assert source.exists()
        assert store.path_for(SHA).read_bytes() == DATA
        with pytest.raises(SizeMismatchError):
            await store.ingest_file(source, size=len(DATA) - 1)


class TestSpace:
    async def test_free_bytes_reads_the_real_filesystem(self, store: BlobStore) -> None:
        """free_bytes is a positive count from the store's filesystem."""
        assert await store.free_bytes() > 0

    async def test_ensure_space_raises_when_the_file_does_not_fit(self, tmp_path: Path) -> None:
        """Needing more than free space minus the reserve raises InsufficientSpaceError."""
        store = SizedStore(tmp_path, free=10 << 20, total=1 << 30, reserve=0)
        await store.ensure_space(10 << 20)
        with pytest.raises(InsufficientSpaceError) as caught:
            await store.ensure_space((10 << 20) + 1)
        assert caught.value.free == 10 << 20

    async def test_the_default_reserve_is_64_mib_or_one_percent(self, tmp_path: Path) -> None:
        """Without a reserve given, the larger of 64 MiB and 1% of the filesystem is kept free."""
        small = SizedStore(tmp_path / "a", free=100 << 20, total=1 << 30)
        await small.ensure_space(36 << 20)
        with pytest.raises(InsufficientSpaceError):
            await small.ensure_space((36 << 20) + 1)
        big = SizedStore(tmp_path / "b", free=200 << 30, total=1000 << 30)
        await big.ensure_space(190 << 30)
        with pytest.raises(InsufficientSpaceError):
            await big.ensure_space((190 << 30) + 1)


class TestGarbageCollection:
    async def test_gc_keeps_referenced_blobs_and_removes_the_rest(self, store: BlobStore) -> None:
        """Unreferenced blobs and partials go, and partials of stored blobs; the rest stay."""
        kept = await store.ingest_bytes(DATA)
        dropped = await store.ingest_bytes(b"old kernel")
        kept_partial = store.partial_path(OTHER)
        stale_partial = store.partial_path(hashlib.sha256(b"gone").hexdigest())
        finished_partial = store.partial_path(kept)
        for partial in (kept_partial, stale_partial, finished_partial):
            partial.write_bytes(b"half")
        stray = store.root / "sha256" / "ab" / "README"
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_text("not a blob")
        result = await store.collect_garbage({kept, OTHER})
        assert result == GCResult(
            blobs_removed=1, partials_removed=2, bytes_freed=len(b"old kernel") + 2 * 4
        )
        assert store.path_for(kept).exists()
        assert not store.path_for(dropped).exists()
        assert kept_partial.exists()
        assert not stale_partial.exists()
        assert not finished_partial.exists()
        assert stray.exists()

    async def test_gc_removes_ingest_temps_left_by_a_dead_process(self, store: BlobStore) -> None:
        """An ingest temp older than an hour is deleted; a fresh one is left alone."""
        await store.prepare()
        old = store.root / "tmp" / "ingest-dead.tmp"
        fresh = store.root / "tmp" / "ingest-live.tmp"
        old.write_bytes(b"x")
        fresh.write_bytes(b"y")
        os.utime(old, (0, 0))
        await store.collect_garbage(set())
        assert not old.exists()
        assert fresh.exists()


def other_filesystem_than(path: Path) -> Path | None:
    """/dev/shm when it is a different filesystem from ``path``."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shm.stat().st_dev != path.stat().st_dev:
        return shm
    return None


class TestLinkInto:
    async def test_link_into_hard_links_and_replaces(
        self, store: BlobStore, tmp_path: Path
    ) -> None:
        """The destination shares the blob's inode, parents are created, old files replaced."""
        await store.ingest_bytes(DATA)
        dest = tmp_path / "snap" / "a" / "b" / "squashfs"
        await store.link_into(SHA, dest)
        dest.unlink()
        dest.write_bytes(b"stale")
        await store.link_into(SHA, dest)
        assert dest.stat().st_ino == store.path_for(SHA).stat().st_ino
        assert dest.read_bytes() == DATA

    async def test_link_into_copies_across_filesystems(self, store: BlobStore) -> None:
        """On another filesystem the blob is copied instead of linked."""
        await store.ingest_bytes(DATA)
        shm = other_filesystem_than(store.root)
        if shm is None:
            pytest.skip("no second filesystem available")
        with tempfile.TemporaryDirectory(dir=shm) as other:
            dest = Path(other) / "squashfs"
            await store.link_into(SHA, dest)
            assert dest.read_bytes() == DATA
            assert dest.stat().st_ino != store.path_for(SHA).stat().st_ino

    async def test_link_into_a_missing_blob_raises(self, store: BlobStore, tmp_path: Path) -> None:
        """Linking a blob the store does not hold raises FileNotFoundError."""
        with pytest.raises(FileNotFoundError):
            await store.link_into(SHA, tmp_path / "dest")
        assert not (tmp_path / "dest").exists()
