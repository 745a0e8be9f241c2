"""The on-disk side of ``bootsync mirror``: a plain SimpleStreams tree.

``DIR`` is laid out as the upstream (``streams/v1/...`` plus every item at its
stream path) so that any web server can serve it and sstream-mirror can read
it. ``DIR/.bootsync/`` holds the blob store (same filesystem: items are hard
links to blobs) and ``state.json``: the files the last run published and the
selection the mirror holds (see :mod:`common.mirror.selection`).

Order of writes, so a reader never sees metadata that names a missing file:
files are linked first (each verified blob, link to a temp name, rename), then
the products documents, then the index; files no longer listed go last.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from common.mirror.selection import MirrorSelection, published_selection
from common.ops.logging import get_logger
from common.storage.atomic import temp_name, write_if_changed
from common.storage.blobstore import BlobStore
from simplestreams import StreamFormatError, served_path_problem

log = get_logger("mirror")

STATE_DIR = ".bootsync"
KEYRING_NAME = "mirror-keyring.gpg"


def published_path_problem(relpath: str) -> str | None:
    """Why the mirror may not write or delete ``relpath`` for its metadata, or None.

    Only a served path (:func:`simplestreams.served_path_problem`) outside the
    mirror's own ``.bootsync/`` store is written: the last guard behind the
    screening that refuses such items (:mod:`common.mirror.screening`).
    """
    problem = served_path_problem(relpath)
    if problem is None and relpath.split("/", 1)[0] == STATE_DIR:
        problem = f"path is inside the mirror's own {STATE_DIR}/ store"
    return problem


def _checked(relpath: str) -> str:
    problem = published_path_problem(relpath)
    if problem is not None:
        raise StreamFormatError(repr(relpath), f"the mirror refuses to write there: {problem}")
    return relpath


class MirrorTree:
    """A mirror directory: its store, its published files and its state."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / STATE_DIR
        self.store = BlobStore(self.state_dir / "store")
        self._state_file = self.state_dir / "state.json"

    async def previous_files(self) -> dict[str, str]:
        """Files (path → sha256 or ``"metadata"``) the last successful run published."""

        def read() -> dict[str, str]:
            try:
                data = json.loads(self._state_file.read_bytes())
            except FileNotFoundError:
                return {}
            return dict(data["files"])

        return await asyncio.to_thread(read)

    async def previous_selection(self) -> MirrorSelection:
        """What the mirror held after the last successful run (empty before the first)."""

        def read() -> MirrorSelection:
            try:
                data = json.loads(self._state_file.read_bytes())
            except FileNotFoundError:
                return MirrorSelection()  # a new mirror
            if "selection" not in data:
                # Made before selections were kept: its own published metadata says.
                return published_selection(self.root)
            return MirrorSelection.from_json(data["selection"], source=str(self._state_file))

        return await asyncio.to_thread(read)

    async def place_files(self, files: Mapping[str, str]) -> int:
        """Hard-link blob ``sha256`` at each ``path``; returns how many links changed."""
        return await asyncio.to_thread(self._place_all, dict(files))

    def _place_all(self, files: dict[str, str]) -> int:
        changed = 0
        for relpath, sha256 in sorted(files.items()):
            blob = self.store.path_for(sha256)
            dest = self.root / _checked(relpath)
            if dest.exists() and dest.samefile(blob):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(temp_name(dest.name, ".tmp"))  # fits beside a 255-byte name
            os.link(blob, tmp)
            tmp.replace(dest)
            changed += 1
        return changed

    async def write_document(self, relpath: str, data: bytes) -> bool:
        """Write a metadata file atomically; False when it already held ``data``."""
        return await asyncio.to_thread(write_if_changed, self.root / _checked(relpath), data)

    async def read_document(self, relpath: str) -> bytes | None:
        """The current bytes of a published metadata file, or None."""

        def read() -> bytes | None:
            try:
                return (self.root / relpath).read_bytes()
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(read)

    async def stale_files(self, files: Mapping[str, str]) -> list[str]:
        """What the previous run published that ``files`` no longer lists, sorted."""
        return sorted(set(await self.previous_files()) - set(files))

    async def commit_state(
        self, files: Mapping[str, str], selection: MirrorSelection | None = None
    ) -> list[str]:
        """Record ``files`` (and ``selection``) as published; delete what only the previous run listed.

        Returns the removed paths.
        """
        stale = await self.stale_files(files)
        payload = await asyncio.to_thread(_render_state, files, selection)
        await asyncio.to_thread(write_if_changed, self._state_file, payload)
        await asyncio.to_thread(self._remove, stale)
        for path in stale:
            log.info("mirror_file_removed", path=path)
        return stale

    def _remove(self, paths: Iterable[str]) -> None:
        for relpath in paths:
            problem = published_path_problem(relpath)
            if problem is not None:  # a state written before the guard: never touch the store
                log.warning("mirror_remove_refused", path=relpath, reason=problem)
                continue
            target = self.root / relpath
            target.unlink(missing_ok=True)
            parent = target.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


def _render_state(files: Mapping[str, str], selection: MirrorSelection | None) -> bytes:
    state: dict[str, object] = {"files": dict(sorted(files.items()))}
    if selection is not None:
        state["selection"] = selection.to_json()
    return json.dumps(state, indent=1, sort_keys=True).encode()
