"""Publishing the region stream: signed, complete sets only, no republish without a change."""

from __future__ import annotations

from pathlib import Path

from common.trust.keyrings import SigningKey, aload_keyring
from common.trust.signing import averify_clearsigned
from region.db import imports as repo_import
from region.db.imports import WantedFile, WantedSet
from region.images.publish import (
    INDEX_PATH,
    KEYRING_NAME,
    PRODUCTS_PATH,
    SIGNED_INDEX_PATH,
    publish_stream,
)
from simplestreams import parse_index, parse_products
from tests.integration.region.import_harness import ImportEnv, import_env


async def hold(
    env: ImportEnv, release: str, version: str, data: bytes, *, stored: bool = True
) -> None:
    """Give the region a set holding ``data`` as its squashfs (stored, or only queued)."""
    sha256 = await env.store.ingest_bytes(data) if stored else "0" * 64
    wanted = WantedSet(
        name=f"ubuntu/{release}",
        architecture="amd64/generic",
        kflavor="generic",
        bootloader_type=None,
        rolling=False,
        extra={"title": release},
        version=version,
        label="stable",
        files=(
            WantedFile(filename="squashfs", filetype="squashfs", sha256=sha256, size=len(data)),
        ),
    )
    await repo_import.write_wanted(env.db, [wanted], {sha256: len(data)} if stored else {})


def current(root: Path) -> Path:
    """The published snapshot directory."""
    return root / "stream" / "current"


async def test_the_stream_lists_complete_sets_signed_with_the_key_at_its_root(
    tmp_path: Path, region_key: SigningKey
) -> None:
    """Only the complete set is listed; the signed index verifies with the published keyring."""
    async with import_env(tmp_path / "region", region_key) as env:
        await hold(env, "noble", "20250718", b"noble squashfs")
        await hold(env, "jammy", "20250718", b"jammy squashfs", stored=False)
        snapshot = await publish_stream(env.db, env.publisher, region_key)
    top = current(tmp_path / "region")
    keyring = await aload_keyring((top / KEYRING_NAME).read_bytes())
    signed = await averify_clearsigned((top / SIGNED_INDEX_PATH).read_bytes(), keyring)
    index = parse_index(signed.payload)
    plain = parse_index((top / INDEX_PATH).read_bytes())
    products = parse_products((top / PRODUCTS_PATH).read_bytes())
    assert snapshot is not None
    assert keyring.fingerprints == (region_key.fingerprint,)
    (entry,) = index.entries.values()
    assert entry.products == ("maas:boot:ubuntu:amd64:generic:noble",)
    assert entry.path is not None
    assert entry.path.endswith(".sjson")
    assert plain.entries[entry.content_id].path == PRODUCTS_PATH
    assert list(products.products) == ["maas:boot:ubuntu:amd64:generic:noble"]
    assert (top / "ubuntu/amd64/generic/noble/20250718/squashfs").read_bytes() == b"noble squashfs"


async def test_unchanged_content_publishes_nothing_and_a_change_publishes_anew(
    tmp_path: Path, region_key: SigningKey
) -> None:
    """Publishing twice keeps the snapshot and its `updated`; new content makes a new one."""
    async with import_env(tmp_path / "region", region_key) as env:
        await hold(env, "noble", "20250718", b"noble squashfs")
        first = await publish_stream(env.db, env.publisher, region_key)
        again = await publish_stream(env.db, env.publisher, region_key)
        await hold(env, "jammy", "20250718", b"jammy squashfs")
        second = await publish_stream(env.db, env.publisher, region_key)
        await hold(env, "focal", "20250718", b"focal squashfs")
        third = await publish_stream(env.db, env.publisher, region_key)
        current_id = await env.publisher.current_id()
    snapshots = sorted(p.name for p in (tmp_path / "region" / "stream" / "snapshots").iterdir())
    assert first is not None
    assert second is not None
    assert third is not None
    assert again is None
    assert current_id == third.id
    assert snapshots == sorted([second.id, third.id])  # two kept
