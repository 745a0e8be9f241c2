"""The region import against a real fake upstream: real SQLite, blob store, gpg and stream."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.trust.keyrings import SigningKey, aload_keyring
from common.trust.signing import averify_clearsigned
from region.db import catalogue as repo_catalogue
from region.db import resources as repo_resources
from region.db import sources as repo_sources
from region.db.connection import Database
from region.images.publish import CONTENT_ID, SIGNED_INDEX_PATH, SIGNED_PRODUCTS_PATH
from region.images.status import image_status
from region.images.steps import ImportSummary
from simplestreams import flatten, parse_index, parse_products
from tests.fakes.waiting import eventually
from tests.integration.region.import_harness import (
    FILE_SIZE,
    KERNEL,
    NEWER,
    NOBLE_AMD64,
    V3,
    Scene,
    drop_products,
    held,
    import_env,
    item_paths,
    resign_index,
    sample_stream,
)

Events = list[MutableMapping[str, Any]]

BOOTLOADERS = {
    ("pxelinux/pxe", "i386/generic"),
    ("grub-efi-signed/uefi", "amd64/generic"),
    ("grub-efi/uefi", "arm64/generic"),
    ("grub-ieee1275/open-firmware", "ppc64el/generic"),
}


async def published(root: Path, key: SigningKey) -> dict[str, str]:
    """path -> sha256 of every item the signed published stream lists (verified)."""
    keyring = await aload_keyring(await key.aexport_public())
    current = root / "stream" / "current"
    index_doc = await averify_clearsigned((current / SIGNED_INDEX_PATH).read_bytes(), keyring)
    index = parse_index(index_doc.payload)
    assert index.entries[CONTENT_ID].path == SIGNED_PRODUCTS_PATH
    doc = await averify_clearsigned((current / SIGNED_PRODUCTS_PATH).read_bytes(), keyring)
    items = {i.path: i.sha256 for i in flatten(parse_products(doc.payload)) if i.path and i.sha256}
    for path, sha256 in items.items():
        assert hashlib.sha256((current / path).read_bytes()).hexdigest() == sha256
    return items


async def test_first_import_holds_selected_images_and_every_bootloader_and_publishes_them(
    scene: Scene, log_events: Events
) -> None:
    """Noble/amd64 and all four bootloaders are downloaded, held and listed in a signed stream."""
    async with import_env(scene.root, scene.region_key) as env:
        await env.add_source(scene.upstream, scene.stream)
        summary = await env.importer.run_import("test")
        holding = await held(env.db)
    assert summary.outcome == "ok", summary.errors
    assert set(holding) == NOBLE_AMD64 | BOOTLOADERS
    assert all(versions in (["20250718"], ["20250718.0"]) for versions in holding.values())
    items = await published(scene.root, scene.region_key)
    assert len(items) == 6 + 5  # ga + hwe kernels/initrds, squashfs twice; 5 archives
    assert "ubuntu/amd64/ga-24.04/noble/20250718/boot-kernel" in items
    assert not any("manifest" in p for p in item_paths(scene.upstream))
    assert summary.files_fetched == 10
    assert summary.images_added == 6
    finished = [e for e in log_events if e["event"] == "import_finished"]
    assert len(finished) == 1
    assert finished[0]["outcome"] == "ok"


async def test_reimporting_the_same_stream_downloads_and_publishes_nothing(scene: Scene) -> None:
    """A second import of an unchanged stream fetches no file and keeps the same snapshot."""
    async with import_env(scene.root, scene.region_key) as env:
        await env.add_source(scene.upstream, scene.stream)
        await env.importer.run_import("first")
        before = await env.publisher.current_id()
        files_before = len(item_paths(scene.upstream))
        summary = await env.importer.run_import("second")
        assert await env.publisher.current_id() == before
    assert summary.outcome == "ok"
    assert summary.files_fetched == 0
    assert summary.files_reused == 10
    assert not summary.published
    assert len(item_paths(scene.upstream)) == files_before


@pytest.fixture
def newer_stream(tmp_path: Path, upstream_key: SigningKey) -> SampleStream:
    """The same stream a month later (every product has a new version)."""
    return sample_stream(tmp_path / "upstream-newer", upstream_key, newest=NEWER)


async def test_a_newer_upstream_version_replaces_the_old_one_once_complete(
    scene: Scene, newer_stream: SampleStream
) -> None:
    """After importing a newer stream each image holds only its new set, and the stream says so."""
    async with import_env(scene.root, scene.region_key) as env:
        await env.add_source(scene.upstream, scene.stream)
        await env.importer.run_import("first")
        scene.upstream.serve_directory(newer_stream.root)
        summary = await env.importer.run_import("second")
        holding = await held(env.db)
    assert summary.outcome == "ok", summary.errors
    assert summary.images_added == 0
    assert summary.images_removed == 0
    assert {v for versions in holding.values() for v in versions} == {"20250815", "20250815.0"}
    items = await published(scene.root, scene.region_key)
    assert all("20250815" in path for path in items)


async def test_blobs_no_set_or_kept_snapshot_references_are_collected(
    scene: Scene, newer_stream: SampleStream
) -> None:
    """Keeping one snapshot, the old version's blobs leave the store once replaced."""
    old_kernel = sha_of(scene.stream, KERNEL)
    new_kernel = sha_of(newer_stream, KERNEL.replace("20250718", "20250815"))
    async with import_env(scene.root, scene.region_key, keep_snapshots=1) as env:
        await env.add_source(scene.upstream, scene.stream)
        await env.importer.run_import("first")
        held_before = await env.store.has(old_kernel, FILE_SIZE)
        scene.upstream.serve_directory(newer_stream.root)
        await env.importer.run_import("second")
        old_after = await env.store.has(old_kernel, FILE_SIZE)
        new_after = await env.store.has(new_kernel, FILE_SIZE)
    assert held_before
    assert not old_after
    assert new_after


async def test_a_corrupted_file_fails_its_set_while_the_previous_set_keeps_being_served(
    scene: Scene, newer_stream: SampleStream, log_events: Events
) -> None:
    """A new kernel that never matches its sha256 leaves ga-24.04 on its old, published set."""
    async with import_env(scene.root, scene.region_key) as env:
        source = await env.add_source(scene.upstream, scene.stream)
        await env.importer.run_import("first")
        scene.upstream.serve_directory(newer_stream.root)
        scene.upstream.flip_byte(KERNEL.replace("20250718", "20250815"), offset=100, times=50)
        summary = await env.importer.run_import("second")
        holding = await held(env.db)
        status = await repo_catalogue.get_status(env.db, source.id)
    assert summary.outcome == "failed"
    assert summary.files_failed == 1
    assert holding[("ubuntu/noble", "amd64/ga-24.04")] == ["20250718"]
    assert holding[("ubuntu/noble", "amd64/hwe-24.04")] == ["20250815"]
    items = await published(scene.root, scene.region_key)
    assert "ubuntu/amd64/ga-24.04/noble/20250718/boot-kernel" in items
    assert not any(p.startswith("ubuntu/amd64/ga-24.04/noble/20250815/") for p in items)
    assert status.last_error is not None
    assert "sha256 mismatch" in status.last_error
    assert any(e["event"] == "download_failed" for e in log_events)


async def test_the_safety_valve_refuses_to_delete_every_image(
    scene: Scene, log_events: Events
) -> None:
    """A selection that matches nothing would delete every image: the deletions are refused."""
    async with import_env(scene.root, scene.region_key) as env:
        source = await env.add_source(scene.upstream, scene.stream)
        await env.importer.run_import("first")
        (selection,) = await repo_sources.list_selections(env.db, source.id)
        await repo_sources.update_selection(env.db, source.id, selection.id, release="bionic")
        summary = await env.importer.run_import("second")
        holding = await held(env.db)
    assert summary.outcome == "failed"
    assert summary.images_removed == 0
    assert set(holding) >= NOBLE_AMD64
    assert [
        e["images"] for e in log_events if e["event"] == "import_refused_to_delete_everything"
    ] == [2]


async def test_images_vanished_upstream_stay_while_selected_and_unselected_ones_go(
    scene: Scene, log_events: Events
) -> None:
    """Noble leaves the stream but is still selected (kept); jammy is unselected (removed)."""
    async with import_env(scene.root, scene.region_key) as env:
        source = await env.add_source(scene.upstream, scene.stream, releases=("noble", "jammy"))
        await env.importer.run_import("first")
        jammy = next(
            s for s in await repo_sources.list_selections(env.db, source.id) if s.release == "jammy"
        )
        await repo_sources.delete_selection(env.db, source.id, jammy.id)
        await asyncio.to_thread(
            drop_products, scene.stream, scene.upstream_key, V3, lambda p: p["release"] == "noble"
        )
        summary = await env.importer.run_import("second")
        holding = await held(env.db)
    assert summary.outcome == "ok", summary.errors
    assert summary.images_kept == 2
    assert summary.images_removed == 1
    assert set(holding) >= NOBLE_AMD64
    assert ("ubuntu/jammy", "amd64/ga-22.04") not in holding
    kept = {e["architecture"] for e in log_events if e["event"] == "image_kept_still_selected"}
    assert kept == {"amd64/ga-24.04", "amd64/hwe-24.04"}


async def test_an_older_index_is_refused_as_a_rollback_unless_forced(
    scene: Scene, log_events: Events
) -> None:
    """An index older than the one imported before is refused; force accepts it."""
    async with import_env(scene.root, scene.region_key) as env:
        source = await env.add_source(scene.upstream, scene.stream)
        await env.importer.run_import("first")
        await asyncio.to_thread(
            resign_index,
            scene.stream,
            scene.upstream_key,
            updated="Mon, 01 Jan 2024 00:00:00 +0000",
        )
        refused = await env.importer.run_import("rollback")
        refused_status = await repo_catalogue.get_status(env.db, source.id)
        forced = await env.importer.run_import("forced", force=True)
        forced_status = await repo_catalogue.get_status(env.db, source.id)
    assert refused.outcome == "failed"
    assert "rollback" in refused.errors[0]
    assert refused_status.last_error is not None
    assert "rollback" in refused_status.last_error
    assert forced.outcome == "ok"
    assert forced_status.last_error is None
    assert [e["event"] for e in log_events if "rollback" in e["event"]] == [
        "index_rollback_refused",
        "index_rollback_forced",
    ]


async def test_an_old_signed_index_gives_the_source_a_frozen_mirror_warning(scene: Scene) -> None:
    """A source whose index was last updated long ago is imported, with a warning kept for it."""
    await asyncio.to_thread(
        resign_index, scene.stream, scene.upstream_key, updated="Mon, 01 Jan 2024 00:00:00 +0000"
    )
    async with import_env(scene.root, scene.region_key, frozen_after_hours=24) as env:
        source = await env.add_source(scene.upstream, scene.stream)
        summary = await env.importer.run_import("test")
        status = await repo_catalogue.get_status(env.db, source.id)
    assert summary.outcome == "ok"
    assert len(status.warnings) == 1
    assert "frozen" in status.warnings[0]
    assert status.last_index_updated == "Mon, 01 Jan 2024 00:00:00 +0000"


async def test_the_default_source_and_selection_are_created_when_there_is_no_source(
    scene: Scene,
) -> None:
    """With no source, the configured default (noble, amd64 + host arch) is created and imported."""
    async with import_env(
        scene.root,
        scene.region_key,
        create_default_source=True,
        default_source_url=scene.upstream.url("/"),
        default_keyring=scene.stream.keyring,
    ) as env:
        summary = await env.importer.run_import("test")
        (source,) = await repo_sources.list_sources(env.db)
        (selection,) = await repo_sources.list_selections(env.db)
        holding = await held(env.db)
    assert summary.outcome == "ok", summary.errors
    assert source.url == scene.upstream.url("/")
    assert source.keyring_filename == str(scene.stream.keyring)
    assert (selection.os, selection.release, selection.subarches, selection.labels) == (
        "ubuntu",
        "noble",
        ("*",),
        ("*",),
    )
    assert "amd64" in selection.arches
    assert set(holding) >= NOBLE_AMD64


async def test_a_second_import_request_while_one_runs_is_skipped(
    scene: Scene, log_events: Events
) -> None:
    """start() and run_import() while an import runs do nothing but log import_skipped."""
    scene.upstream.stall(KERNEL, after_bytes=8192, seconds=0.5)
    async with import_env(scene.root, scene.region_key) as env:
        await env.add_source(scene.upstream, scene.stream)
        assert env.importer.start(reason="first")
        assert env.importer.is_importing()
        assert not env.importer.start(reason="second")
        skipped = await env.importer.run_import("third")
        await eventually(lambda: _false(env.importer.is_importing()))
    assert skipped == ImportSummary(outcome="skipped", reason="third")
    assert [e["trigger"] for e in log_events if e["event"] == "import_skipped"] == [
        "second",
        "third",
    ]
    assert [e["outcome"] for e in log_events if e["event"] == "import_finished"] == ["ok"]


async def _false(value: bool) -> bool:
    return not value


async def test_sources_changed_during_an_import_make_it_run_again(
    scene: Scene, log_events: Events
) -> None:
    """A selection added while files download is imported by an immediate second run."""
    scene.upstream.stall(KERNEL, after_bytes=8192, seconds=0.5)
    async with import_env(scene.root, scene.region_key) as env:
        source = await env.add_source(scene.upstream, scene.stream)
        running = asyncio.create_task(env.importer.run_import("test"))
        await eventually(lambda: _downloading(env.db))
        await repo_sources.create_selection(
            env.db,
            source.id,
            os="ubuntu",
            release="jammy",
            arches=["amd64"],
            subarches=["*"],
            labels=["*"],
        )
        summary = await running
        holding = await held(env.db)
    assert summary.outcome == "ok"
    assert summary.reason == "test (re-run)"
    assert ("ubuntu/jammy", "amd64/ga-22.04") in holding
    assert sum(1 for e in log_events if e["event"] == "import_rerun") == 1


async def _downloading(db: Any) -> bool:
    """True once some image shows ``Downloading NN%``."""
    listed = await repo_resources.list_resources(db)
    return any(t is not None and 0 < t.done < t.total for _r, t in listed)


BIG = int(2.5 * (1 << 20))  # a file the downloader writes in more than one batch
STALL_AT = 2 << 20


@pytest.fixture
def big_stream(tmp_path: Path, upstream_key: SigningKey) -> SampleStream:
    """A stream whose kernels, initrds and squashfs are 2.5 MiB."""
    return write_sample_stream(
        tmp_path / "upstream-big", file_size=BIG, versions=1, signing_key=upstream_key
    )


def sha_of(stream: SampleStream, path: str) -> str:
    """The sha256 the stream's v3 products document gives for ``path``."""
    doc = parse_products((stream.root / "streams" / "v1" / f"{V3}.json").read_bytes())
    return next(i.sha256 for i in flatten(doc) if i.path == path and i.sha256)


async def _stalled_and_rest_done(db: Database) -> bool:
    """True once only the stalled kernel is incomplete and it has bytes."""
    async with (
        db.read() as conn,
        conn.execute(
            "SELECT filename, bytes_done, size FROM boot_resource_files WHERE bytes_done < size"
        ) as cur,
    ):
        rows = list(await cur.fetchall())
    return len(rows) == 1 and rows[0]["filename"] == "boot-kernel" and rows[0]["bytes_done"] > 0


async def test_stop_import_cancels_promptly_publishing_only_complete_sets_and_keeping_partials(
    scene: Scene, big_stream: SampleStream, log_events: Events
) -> None:
    """Stopping mid-download ends the import, publishes only complete sets, keeps the partial."""
    scene.upstream.serve_directory(big_stream.root)
    scene.upstream.stall(KERNEL, after_bytes=STALL_AT, seconds=2)
    async with import_env(scene.root, scene.region_key) as env:
        await env.add_source(scene.upstream, big_stream)
        assert env.importer.start(reason="test")
        await eventually(lambda: _stalled_and_rest_done(env.db))
        statuses = {
            r.architecture: image_status(
                has_set=t is not None, complete=t.complete, done=t.done, total=t.total
            )
            for r, t in await repo_resources.list_resources(env.db)
            if t
        }
        await env.importer.stop()
        importing = env.importer.is_importing()
        holding = await held(env.db)
        async with (
            env.db.read() as conn,
            conn.execute("SELECT outcome FROM import_runs") as cur,
        ):
            outcomes = [row[0] for row in await cur.fetchall()]
        partial = env.store.partial_path(sha_of(big_stream, KERNEL))
    assert statuses["amd64/ga-24.04"].startswith("Downloading ")
    assert statuses["amd64/hwe-24.04"] == "Synced"
    assert not importing
    assert outcomes == ["cancelled"]
    assert set(holding) == NOBLE_AMD64 - {("ubuntu/noble", "amd64/ga-24.04")} | BOOTLOADERS
    items = await published(scene.root, scene.region_key)
    assert not any(p.startswith("ubuntu/amd64/ga-24.04/") for p in items)
    assert "ubuntu/amd64/hwe-24.04/noble/20250718/boot-kernel" in items
    assert 0 < partial.stat().st_size < BIG
    assert [e["outcome"] for e in log_events if e["event"] == "import_finished"] == ["cancelled"]


async def test_a_restart_mid_import_completes_without_refetching_finished_files(
    scene: Scene, big_stream: SampleStream
) -> None:
    """A new region over the same data resumes the partial kernel and fetches nothing else."""
    scene.upstream.serve_directory(big_stream.root)
    scene.upstream.stall(KERNEL, after_bytes=STALL_AT, seconds=2)
    async with import_env(scene.root, scene.region_key) as env:
        await env.add_source(scene.upstream, big_stream)
        assert env.importer.start(reason="before restart")
        await eventually(lambda: _stalled_and_rest_done(env.db))
        partial = env.store.partial_path(sha_of(big_stream, KERNEL)).stat().st_size
    seen = len(scene.upstream.requests)
    async with import_env(scene.root, scene.region_key) as env:
        summary = await env.importer.run_import("after restart")
    again = [r for r in scene.upstream.requests[seen:] if not r.path.startswith("/streams/")]
    assert summary.outcome == "ok", summary.errors
    assert [(r.path, r.range) for r in again] == [(f"/{KERNEL}", f"bytes={partial}-")]
    assert summary.files_fetched == 1
    assert summary.files_reused == 9
    assert summary.bytes == BIG - partial
