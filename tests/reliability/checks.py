"""What "nothing corrupt" means on disk, checked the same way for the region, a rack and a mirror.

Each check returns a list of problems (empty: fine) instead of asserting, so a
trial can report every problem of a state at once. The checks read files the
way a reader of the data would: blobs by their sha256 names, a published
snapshot through its ``current`` link and manifest, signed streams through
their keyring.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from common.storage.snapshot import MANIFEST_NAME
from common.trust.keyrings import aload_keyring
from common.trust.signing import averify_clearsigned
from region.images.publish import KEYRING_NAME, PRODUCTS_PATH, SIGNED_INDEX_PATH
from simplestreams import flatten, parse_index, parse_products

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """The sha256 of the file at ``path`` (blocking)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def held_blobs(store: Path) -> dict[str, Path]:
    """sha256 name → path of every complete blob of the blob store at ``store`` (blocking)."""
    root = store / "sha256"
    if not root.is_dir():
        return {}
    return {p.name: p for p in root.glob("*/*") if p.is_file()}


def _store_problems(store: Path) -> list[str]:
    problems = []
    for name, path in held_blobs(store).items():
        if path.parent.name != name[:2]:
            problems.append(f"{path}: blob filed under the wrong prefix")
        actual = sha256_of(path)
        if actual != name:
            problems.append(f"{path}: content has sha256 {actual}")
    return problems


async def store_problems(store: Path) -> list[str]:
    """Every blob of the store whose content does not hash to its name."""
    return await asyncio.to_thread(_store_problems, store)


def _snapshot_problems(root: Path) -> list[str]:
    current = root / "current"
    if not current.is_symlink():
        return [] if not current.exists() else [f"{current}: not a symlink"]
    target = current.resolve()
    if not target.is_dir():
        return [f"{current}: points at {current.readlink()}, which is no directory"]
    manifest_path = target / MANIFEST_NAME
    if not manifest_path.is_file():
        return [f"{target}: no {MANIFEST_NAME}"]
    raw = manifest_path.read_bytes()
    problems = []
    if hashlib.sha256(raw).hexdigest()[:16] != target.name:
        problems.append(f"{target}: the manifest does not hash to the snapshot id")
    manifest = json.loads(raw)
    listed: dict[str, str] = {**manifest["files"], **manifest["blobs"]}
    for relpath, sha in listed.items():
        path = target / relpath
        if not path.is_file():
            problems.append(f"{path}: listed in the manifest, missing")
        elif sha256_of(path) != sha:
            problems.append(f"{path}: content differs from the manifest's {sha}")
    present = {
        str(p.relative_to(target)) for p in target.rglob("*") if p.is_file() or p.is_symlink()
    }
    extra = present - set(listed) - {MANIFEST_NAME}
    problems += [f"{target / e}: in the snapshot, not in its manifest" for e in sorted(extra)]
    return problems


async def snapshot_problems(root: Path) -> list[str]:
    """Problems of the snapshot ``root/current`` points at (none published: none).

    Complete means: the manifest hashes to the snapshot's id, every file and
    blob it lists is there with that sha256, and nothing else is.
    """
    return await asyncio.to_thread(_snapshot_problems, root)


async def signed_stream_problems(root: Path, keyring_path: Path, index: str) -> list[str]:
    """Problems of the signed stream under ``root`` whose index is ``index`` (relative).

    Every document must verify against ``keyring_path``, and every item it
    lists must be at its path under ``root`` with its sha256. A stream not
    written yet (no index) has none.
    """
    if not await asyncio.to_thread((root / index).is_file):
        return []
    keyring = await aload_keyring(keyring_path)
    problems: list[str] = []
    signed = await asyncio.to_thread((root / index).read_bytes)
    parsed = parse_index((await averify_clearsigned(signed, keyring)).payload)
    for content_id, entry in parsed.entries.items():
        if entry.path is None:
            problems.append(f"{index}: {content_id} has no path")
            continue
        path = root / entry.path
        if not await asyncio.to_thread(path.is_file):
            problems.append(f"{entry.path}: listed in the index, missing")
            continue
        doc = await averify_clearsigned(await asyncio.to_thread(path.read_bytes), keyring)
        for item in flatten(parse_products(doc.payload)):
            if item.path is None:
                continue
            problems += await asyncio.to_thread(_item_problem, root, item.path, item.sha256)
    return problems


def _item_problem(root: Path, relpath: str, sha256: str | None) -> list[str]:
    path = root / relpath
    if not path.is_file():
        return [f"{relpath}: listed, missing"]
    if sha256_of(path) != sha256:
        return [f"{relpath}: content differs from the listed {sha256}"]
    return []


async def region_problems(data: Path) -> list[str]:
    """Everything corrupt in a region's data directory: blobs, snapshot, signed stream."""
    stream = data / "stream"
    return [
        *await store_problems(data / "store"),
        *await snapshot_problems(stream),
        *await signed_stream_problems(stream / "current", data / KEYRING_NAME, SIGNED_INDEX_PATH),
    ]


async def published_versions(data: Path, *, release: str = "noble") -> set[str]:
    """Versions of ``release``/amd64 a region's current stream lists (none published: none)."""
    path = data / "stream" / "current" / PRODUCTS_PATH
    if not await asyncio.to_thread(path.is_file):
        return set()
    raw = await asyncio.to_thread(path.read_bytes)
    return {
        v
        for p in parse_products(raw).products.values()
        if p.attrs.get("release") == release and p.attrs.get("arch") == "amd64"
        for v in p.versions
    }
