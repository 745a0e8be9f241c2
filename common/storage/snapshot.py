"""Immutable snapshots published by switching a ``current`` symlink atomically.

Layout under ``root``::

    snapshots/<id>/...          complete, never modified after publication
    snapshots/.building-<rand>/ a snapshot being built (never served)
    current -> snapshots/<id>   switched by renaming a new link over the old one

A snapshot is built inside :meth:`SnapshotPublisher.build`: metadata files are
written and blobs hard-linked into a hidden building directory; only when the
block ends without error is the directory renamed to its id and ``current``
switched. If anything fails the building directory is removed, so a half-built
snapshot is never visible. Each snapshot carries a manifest of the blobs it links,
which is what garbage collection of the blob store keeps.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from common.ops.logging import get_logger
from common.storage.atomic import fsync_dir, write_atomic
from common.storage.blobstore import BlobStore

MANIFEST_NAME = ".bootsync-manifest.json"
_BUILDING_PREFIX = ".building-"

log = get_logger("snapshot")


@dataclass(frozen=True)
class PublishedSnapshot:
    """A snapshot that ``current`` points at (or pointed at)."""

    id: str
    path: Path
    changed: bool  # False when an identical snapshot was already current


@dataclass
class SnapshotBuilder:
    """Collects the content of one snapshot while it is being built."""

    path: Path
    store: BlobStore
    files: dict[str, str] = field(default_factory=dict)  # relpath -> sha256 of content
    blobs: dict[str, str] = field(default_factory=dict)  # relpath -> blob sha256
    result: PublishedSnapshot | None = None  # set once the snapshot is published

    async def write_file(self, relpath: str, data: bytes) -> None:
        """Write a metadata file at ``relpath`` (fsynced)."""
        target = self._target(relpath)
        self.files[relpath] = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(write_atomic, target, data, exclusive=True)

    async def link_blob(self, sha256: str, relpath: str) -> None:
        """Hard-link the stored blob ``sha256`` at ``relpath``."""
        target = self._target(relpath)
        await self.store.link_into(sha256, target)
        self.blobs[relpath] = sha256

    def _target(self, relpath: str) -> Path:
        if relpath in self.files or relpath in self.blobs:
            raise ValueError(f"{relpath}: already in this snapshot")
        parts = PurePosixPath(relpath).parts
        if (
            not parts
            or relpath.startswith("/")
            or ".." in parts
            or "\\" in relpath
            or relpath == MANIFEST_NAME
        ):
            raise ValueError(f"{relpath}: not a path inside the snapshot")
        return self.path / relpath

    def manifest(self) -> bytes:
        """The manifest: every file and blob of the snapshot, as canonical JSON."""
        body = {
            "files": dict(sorted(self.files.items())),
            "blobs": dict(sorted(self.blobs.items())),
        }
        return json.dumps(body, sort_keys=True, indent=1).encode() + b"\n"


class SnapshotPublisher:
    """Builds snapshots under ``root`` and switches ``root/current`` atomically.

    One publisher (one task) writes a given root at a time: :meth:`prune` removes
    building directories left behind by a crashed process.
    """

    def __init__(self, root: Path, store: BlobStore) -> None:
        self.root = root
        self.store = store
        self.snapshots = root / "snapshots"
        self.current_link = root / "current"
        self._listeners: list[Callable[[PublishedSnapshot], None]] = []

    def add_listener(self, listener: Callable[[PublishedSnapshot], None]) -> None:
        """Call ``listener`` (on the loop, must not block) after each switch of ``current``."""
        self._listeners.append(listener)

    @asynccontextmanager
    async def build(self) -> AsyncIterator[SnapshotBuilder]:
        """Yield a builder; publish its content when the block ends without error."""
        building = self.snapshots / f"{_BUILDING_PREFIX}{secrets.token_hex(8)}"
        await asyncio.to_thread(building.mkdir, parents=True)
        builder = SnapshotBuilder(path=building, store=self.store)
        try:
            yield builder
            builder.result = await self._publish(builder)
        finally:
            await asyncio.to_thread(shutil.rmtree, building, True)

    async def _publish(self, builder: SnapshotBuilder) -> PublishedSnapshot:
        manifest = builder.manifest()
        snapshot_id = hashlib.sha256(manifest).hexdigest()[:16]
        final = self.snapshots / snapshot_id
        await asyncio.to_thread(
            write_atomic, builder.path / MANIFEST_NAME, manifest, exclusive=True
        )
        previous = await self.current_id()
        if not await asyncio.to_thread(final.exists):
            await asyncio.to_thread(_fsync_tree_dirs, builder.path)
            await asyncio.to_thread(os.replace, builder.path, final)
            await asyncio.to_thread(fsync_dir, self.snapshots)
        await asyncio.to_thread(_switch_link, self.current_link, Path("snapshots") / snapshot_id)
        changed = previous != snapshot_id
        log.info(
            "snapshot_published",
            snapshot_id=snapshot_id,
            changed=changed,
            files=len(builder.files),
            blobs=len(builder.blobs),
            path=str(final),
        )
        published = PublishedSnapshot(id=snapshot_id, path=final, changed=changed)
        if changed:
            for listener in self._listeners:
                listener(published)
        return published

    async def current_id(self) -> str | None:
        """The id ``current`` points at, or None before the first publication."""
        try:
            target = await asyncio.to_thread(os.readlink, self.current_link)
        except FileNotFoundError:
            return None
        return Path(target).name

    async def prune(self, keep: int = 1) -> list[str]:
        """Delete all but the ``keep`` newest snapshots (``current`` is always kept).

        Leftover building directories from a crashed process are removed too.
        Returns the ids that were deleted.
        """
        current = await self.current_id()
        removed = await asyncio.to_thread(_prune, self.snapshots, current, max(keep, 1))
        if removed:
            log.info("snapshots_pruned", removed=removed, kept_current=current)
        return removed

    async def referenced_blobs(self) -> set[str]:
        """Every blob sha256 linked by a snapshot that still exists."""
        return await asyncio.to_thread(_referenced_blobs, self.snapshots)


def _fsync_tree_dirs(root: Path) -> None:
    for dirpath, _dirnames, _files in os.walk(root):
        fsync_dir(Path(dirpath))


def _switch_link(link: Path, target: Path) -> None:
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
    tmp.symlink_to(target)
    tmp.replace(link)
    fsync_dir(link.parent)


def _prune(snapshots: Path, current: str | None, keep: int) -> list[str]:
    if not snapshots.is_dir():
        return []
    building = [p for p in snapshots.iterdir() if p.name.startswith(_BUILDING_PREFIX)]
    done = [
        p for p in snapshots.iterdir() if p.is_dir() and not p.name.startswith(_BUILDING_PREFIX)
    ]
    done.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    kept = {p.name for p in done[:keep]} | ({current} if current else set())
    removed = []
    for path in done:
        if path.name not in kept:
            shutil.rmtree(path)
            removed.append(path.name)
    for path in building:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _referenced_blobs(snapshots: Path) -> set[str]:
    found: set[str] = set()
    if not snapshots.is_dir():
        return found
    for snap in snapshots.iterdir():
        manifest = snap / MANIFEST_NAME
        if manifest.is_file():
            found.update(json.loads(manifest.read_bytes())["blobs"].values())
    return found
