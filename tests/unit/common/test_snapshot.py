"""Snapshots are built out of sight and published by one atomic symlink switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.storage.blobstore import BlobStore
from common.storage.snapshot import MANIFEST_NAME, SnapshotPublisher


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


@pytest.fixture
def publisher(tmp_path: Path, store: BlobStore) -> SnapshotPublisher:
    return SnapshotPublisher(tmp_path / "pub", store)


async def test_published_snapshot_holds_metadata_and_hard_links_to_blobs(
    publisher: SnapshotPublisher, store: BlobStore
) -> None:
    """After the build block, current points at a snapshot with the file and the blob link."""
    sha = await store.ingest_bytes(b"kernel bytes")
    async with publisher.build() as snap:
        await snap.write_file("streams/v1/index.json", b"{}\n")
        await snap.link_blob(sha, "noble/amd64/boot-kernel")
    assert snap.result is not None
    current = publisher.current_link
    assert (current / "streams/v1/index.json").read_bytes() == b"{}\n"
    served = current / "noble/amd64/boot-kernel"
    assert served.read_bytes() == b"kernel bytes"
    assert served.samefile(store.path_for(sha))
    assert await publisher.current_id() == snap.result.id
    assert await publisher.referenced_blobs() == {sha}


async def test_failed_build_leaves_current_untouched_and_no_directory_behind(
    publisher: SnapshotPublisher, store: BlobStore
) -> None:
    """An exception inside the build block publishes nothing and removes the partial tree."""
    async with publisher.build() as first:
        await first.write_file("a.json", b"1")
    before = await publisher.current_id()

    async def failing_build() -> None:
        async with publisher.build() as snap:
            await snap.write_file("a.json", b"2")
            raise RuntimeError("download failed")

    with pytest.raises(RuntimeError, match="download failed"):
        await failing_build()
    assert await publisher.current_id() == before
    assert (publisher.current_link / "a.json").read_bytes() == b"1"
    assert sorted(p.name for p in publisher.snapshots.iterdir()) == [before]


async def test_identical_content_gives_the_same_snapshot_id(publisher: SnapshotPublisher) -> None:
    """Two builds of the same content publish one snapshot; the second reports no change."""
    ids = []
    for _ in range(2):
        async with publisher.build() as snap:
            await snap.write_file("x.json", b"same")
        assert snap.result is not None
        ids.append((snap.result.id, snap.result.changed))
    assert ids[0][0] == ids[1][0]
    assert [changed for _, changed in ids] == [True, False]


async def test_prune_keeps_current_and_newest_and_removes_crashed_builds(
    publisher: SnapshotPublisher,
) -> None:
    """prune(keep=1) leaves only current, and removes a building directory left by a crash."""
    for n in range(3):
        async with publisher.build() as snap:
            await snap.write_file("n.json", str(n).encode())
    crashed = publisher.snapshots / ".building-deadbeef"
    crashed.mkdir()
    removed = await publisher.prune(keep=1)
    assert len(removed) == 2
    assert [p.name for p in publisher.snapshots.iterdir()] == [await publisher.current_id()]


async def test_builder_refuses_paths_outside_the_snapshot_and_the_manifest_name(
    publisher: SnapshotPublisher,
) -> None:
    """A relative path that escapes the snapshot, or names the manifest, is refused."""
    async with publisher.build() as snap:
        with pytest.raises(ValueError, match="not a path inside"):
            await snap.write_file("../escape", b"x")
        with pytest.raises(ValueError, match="not a path inside"):
            await snap.write_file(MANIFEST_NAME, b"x")
        await snap.write_file("ok.json", b"x")
        with pytest.raises(ValueError, match="already in this snapshot"):
            await snap.write_file("ok.json", b"y")


async def test_current_is_always_a_complete_snapshot_while_switching(
    publisher: SnapshotPublisher,
) -> None:
    """current is a symlink replaced by rename: at no point is it missing or dangling."""
    async with publisher.build() as snap:
        await snap.write_file("v.json", b"1")
    async with publisher.build() as snap:
        await snap.write_file("v.json", b"2")
        assert (publisher.current_link / "v.json").read_bytes() == b"1"
    assert publisher.current_link.is_symlink()
    assert (publisher.current_link / "v.json").read_bytes() == b"2"
    assert not list(publisher.root.glob(".current.*"))


async def test_listeners_hear_each_switch_of_current_but_not_a_republication(
    publisher: SnapshotPublisher,
) -> None:
    """A listener is called with the new snapshot; an identical rebuild calls nobody."""
    heard: list[str] = []
    publisher.add_listener(lambda snap: heard.append(snap.id))
    for content in (b"1", b"1", b"2"):
        async with publisher.build() as snap:
            await snap.write_file("v.json", content)
    assert len(heard) == 2
    assert heard[-1] == await publisher.current_id()
