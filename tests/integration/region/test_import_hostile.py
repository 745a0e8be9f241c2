"""Hostile upstream metadata against a real region import: each bad thing refused alone."""

from __future__ import annotations

import asyncio
import errno
import shutil
import subprocess
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from common.mirror.samplestream import SampleStream
from common.trust.keyrings import SigningKey
from region.db import catalogue as repo_catalogue
from region.db import imports as repo_import
from region.db import resources as repo_resources
from region.db.imports import WantedFile, WantedSet
from region.images.publish import PRODUCTS_PATH, publish_stream
from simplestreams import parse_products
from tests.fakes.hostile import copy_products_document, edit_products, newest_version
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually
from tests.integration.region.import_harness import (
    KERNEL,
    NEWER,
    NOBLE_AMD64,
    V3,
    Scene,
    held,
    import_env,
    sample_stream,
)

Events = list[MutableMapping[str, Any]]
INDEX = "streams/v1/index.sjson"


async def test_a_redirect_loop_on_one_source_is_its_error_and_the_other_source_imports(
    scene: Scene, log_events: Events
) -> None:
    """A source whose index redirects for ever gets that error; the healthy one imports."""
    async with FakeUpstream() as looping:
        looping.redirect(INDEX, INDEX)
        async with import_env(scene.root, scene.region_key) as env:
            broken = await env.add_source(looping, scene.stream)
            healthy = await env.add_source(scene.upstream, scene.stream)
            summary = await env.importer.run_import("test")
            broken_status = await repo_catalogue.get_status(env.db, broken.id)
            healthy_status = await repo_catalogue.get_status(env.db, healthy.id)
            holding = await held(env.db)
    assert set(holding) >= NOBLE_AMD64
    assert broken_status.last_error is not None
    assert "redirect" in broken_status.last_error.lower()
    assert healthy_status.last_error is None
    assert summary.outcome == "failed"
    assert len(summary.errors) == 1
    assert not any(e["event"] in ("import_failed", "catalogue_refresh_crashed") for e in log_events)


GA = "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04"
GA_KEY = ("ubuntu/noble", "amd64/ga-24.04")
HWE_KEY = ("ubuntu/noble", "amd64/hwe-24.04")
OLD = "Mon, 01 Jan 2024 00:00:00 +0000"


async def test_any_failure_reading_one_source_is_its_error_and_the_other_source_imports(
    scene: Scene, tmp_path: Path, log_events: Events
) -> None:
    """A source whose metadata the database cannot store fails alone; the other one imports."""
    bad = await asyncio.to_thread(sample_stream, tmp_path / "bad", scene.upstream_key)
    await asyncio.to_thread(
        edit_products,
        bad.root,
        scene.upstream_key,
        lambda doc: doc["products"][GA].update(release_title="\ud800"),
    )
    async with FakeUpstream() as hostile:
        hostile.serve_directory(bad.root)
        hostile_url = hostile.url("/")
        async with import_env(scene.root, scene.region_key) as env:
            broken = await env.add_source(hostile, bad)
            healthy = await env.add_source(scene.upstream, scene.stream)
            summary = await env.importer.run_import("test")
            broken_status = await repo_catalogue.get_status(env.db, broken.id)
            healthy_status = await repo_catalogue.get_status(env.db, healthy.id)
            holding = await held(env.db)
    assert set(holding) >= NOBLE_AMD64
    assert broken_status.last_error is not None
    assert hostile_url in broken_status.last_error
    assert healthy_status.last_error is None
    assert summary.outcome == "failed"
    assert len(summary.errors) == 1
    assert summary.published
    assert not any(e["event"] in ("import_failed", "catalogue_refresh_crashed") for e in log_events)


# --- 11b: mix-and-match rollback -----------------------------------------------------------


@pytest.fixture
def older_stream(tmp_path: Path, upstream_key: SigningKey) -> SampleStream:
    """The sample stream of 2025-07-18 whose products documents say they were updated in 2024."""
    stream = sample_stream(tmp_path / "older", upstream_key)
    edit_products(stream.root, upstream_key, lambda doc: doc.update(updated=OLD))
    return stream


def _mix(current: SampleStream, older: SampleStream) -> None:
    """Serve ``older``'s v3 products document (and its files) beside ``current``'s index."""
    shutil.copytree(older.root, current.root, dirs_exist_ok=True, ignore=lambda d, _: ["streams"])
    copy_products_document(older.root, current.root)


async def test_a_current_index_with_an_older_products_document_is_refused_unless_forced(
    scene: Scene, tmp_path: Path, older_stream: SampleStream, log_events: Events
) -> None:
    """The signed index of today with last year's signed products: refused, forced accepted."""
    newer = await asyncio.to_thread(
        sample_stream, tmp_path / "newer", scene.upstream_key, newest=NEWER
    )
    scene.upstream.serve_directory(newer.root)
    async with import_env(scene.root, scene.region_key) as env:
        source = await env.add_source(scene.upstream, newer)
        first = await env.importer.run_import("first")
        await asyncio.to_thread(_mix, newer, older_stream)
        refused = await env.importer.run_import("mix and match")
        refused_holding = await held(env.db)
        refused_status = await repo_catalogue.get_status(env.db, source.id)
        forced = await env.importer.run_import("forced", force=True)
        forced_holding = await held(env.db)
    assert first.outcome == "ok", first.errors
    assert refused.outcome == "failed"
    assert any("rollback" in e and V3 in e for e in refused.errors)
    assert refused_holding[GA_KEY] == ["20250815"]
    assert refused_status.last_error is not None
    assert "rollback" in refused_status.last_error
    assert forced.outcome == "ok", forced.errors
    assert forced_holding[GA_KEY] == ["20250718"]
    rollbacks = [e for e in log_events if "rollback" in e["event"]]
    assert [(e["event"], e.get("content_id")) for e in rollbacks] == [
        ("index_rollback_refused", V3),
        ("index_rollback_forced", V3),
    ]
    assert rollbacks[0]["updated"] == OLD


async def test_a_products_document_whose_versions_go_backwards_is_refused(
    scene: Scene, tmp_path: Path, log_events: Events
) -> None:
    """A products document dated now but holding older versions than imported is a rollback."""
    newer = await asyncio.to_thread(
        sample_stream, tmp_path / "newer", scene.upstream_key, newest=NEWER
    )
    scene.upstream.serve_directory(newer.root)
    async with import_env(scene.root, scene.region_key) as env:
        await env.add_source(scene.upstream, newer)
        first = await env.importer.run_import("first")
        older = await asyncio.to_thread(sample_stream, tmp_path / "older", scene.upstream_key)
        await asyncio.to_thread(_mix, newer, older)
        refused = await env.importer.run_import("versions back")
        holding = await held(env.db)
    assert first.outcome == "ok", first.errors
    assert refused.outcome == "failed"
    assert any("20250718" in e and "20250815" in e for e in refused.errors)
    assert holding[GA_KEY] == ["20250815"]
    refusal = next(e for e in log_events if e["event"] == "index_rollback_refused")
    assert refusal["content_id"] == V3
    assert refusal["product"].startswith("com.ubuntu.maas.stable:v3:boot:")
    assert (refusal["version"], refusal["last_imported"]) in {
        ("20250718", "20250815"),
        ("20250718.0", "20250815.0"),
    }


# --- 12: names the region could not publish or serve ------------------------------------


def _ga_item(doc: dict[str, Any], item: str) -> dict[str, Any]:
    return dict(newest_version(doc, GA)["items"][item])


def _set_item(doc: dict[str, Any], item: str, **fields: object) -> None:
    newest_version(doc, GA)["items"][item].update(fields)


def _long_file_name(doc: dict[str, Any]) -> None:
    path = _ga_item(doc, "boot-kernel")["path"]
    _set_item(doc, "boot-kernel", path=path.rsplit("/", 1)[0] + "/" + "k" * 300)


def _long_path(doc: dict[str, Any]) -> None:
    _set_item(doc, "boot-kernel", path="/".join(["d" * 200] * 22) + "/boot-kernel")


def _hidden_version(doc: dict[str, Any]) -> None:
    versions = doc["products"][GA]["versions"]
    versions[".hidden"] = versions.pop(max(versions))


def _hidden_file(doc: dict[str, Any]) -> None:
    path = _ga_item(doc, "squashfs")["path"]
    _set_item(doc, "squashfs", path=path.rsplit("/", 1)[0] + "/.squashfs")


def _unsafe_label(doc: dict[str, Any]) -> None:
    doc["products"][GA]["label"] = "../../etc"


def _petabyte(doc: dict[str, Any]) -> None:
    _set_item(doc, "boot-kernel", size=10**15)


HOSTILE = {
    "300-byte file name": (_long_file_name, "items[boot-kernel].path", "is 300 bytes"),
    "4,600-byte path": (_long_path, "items[boot-kernel].path", "more than 1024"),
    "hidden version": (_hidden_version, "versions[.hidden]", "starts with '.'"),
    "hidden file": (_hidden_file, "items[squashfs].path", "starts with '.'"),
    "unsafe label": (_unsafe_label, ".label", "holds a '/'"),
    "petabyte item": (_petabyte, "items[boot-kernel].size", "more than the largest item"),
}


async def published_sets(root: Path) -> set[tuple[str, str, str]]:
    """(name, architecture, version) of every set the region's current stream lists."""
    current = root / "stream" / "current"
    doc = parse_products(await asyncio.to_thread((current / PRODUCTS_PATH).read_bytes))
    return {
        (f"{p.attrs['os']}/{p.attrs['release']}", f"{p.attrs['arch']}/{p.attrs['subarch']}", v)
        for p in doc.products.values()
        for v in p.versions
    }


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_an_item_the_region_could_not_serve_is_refused_and_the_rest_imports(
    scene: Scene, case: str, log_events: Events
) -> None:
    """The product version holding the item is refused with an event; the rest is published."""
    edit, field, reason = HOSTILE[case]
    await asyncio.to_thread(edit_products, scene.stream.root, scene.upstream_key, edit)
    async with import_env(scene.root, scene.region_key) as env:
        source = await env.add_source(scene.upstream, scene.stream)
        first = await env.importer.run_import("first")
        second = await env.importer.run_import("second")
        holding = await held(env.db)
        status = await repo_catalogue.get_status(env.db, source.id)
    assert GA_KEY not in holding
    assert holding[HWE_KEY] == ["20250718"]
    assert first.published
    assert first.outcome == second.outcome == "failed"
    assert any(field in e and reason in e for e in first.errors), first.errors
    assert any(field in w for w in status.warnings)
    held_sets = {(name, arch, v) for (name, arch), versions in holding.items() for v in versions}
    assert await published_sets(scene.root) == held_sets
    refused = [e for e in log_events if e["event"] == "stream_item_refused"]
    assert refused
    assert all(field in e["location"] and reason in e["reason"] for e in refused)
    assert all(e["location"].startswith(scene.upstream.url("/streams/v1/")) for e in refused)
    assert not any(e["event"].startswith(("import_failed", "import_settle")) for e in log_events)


# --- 13: no space ------------------------------------------------------------------------------


async def test_a_selection_larger_than_the_free_space_is_a_named_no_space_failure(
    scene: Scene, log_events: Events
) -> None:
    """With no item limit, a petabyte item fails the import as no_space with need and free."""
    await asyncio.to_thread(edit_products, scene.stream.root, scene.upstream_key, _petabyte)
    async with import_env(scene.root, scene.region_key, max_item_size=1 << 60) as env:
        await env.add_source(scene.upstream, scene.stream)
        summary = await env.importer.run_import("test")
    assert summary.outcome == "failed"
    assert summary.failure == "no_space"
    assert summary.space_needed is not None
    assert summary.space_needed >= 10**15
    assert summary.space_free is not None
    assert 0 < summary.space_free < 10**15
    (event,) = [e for e in log_events if e["event"] == "import_no_space"]
    assert (event["reason"], event["need"], event["free"]) == (
        "no_space",
        summary.space_needed,
        summary.space_free,
    )
    assert "exc_info" not in event
    assert not any(e["event"] == "import_failed" for e in log_events)
    finished = [e for e in log_events if e["event"] == "import_finished"]
    assert finished[-1]["failure"] == "no_space"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 80 MiB tmpfs mounted for the test (skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


def fill(disk: Path) -> Path:
    """Write a ballast file until ``disk`` has not one byte left; its path."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            block = b"\0" * chunk
            try:
                while True:
                    f.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return ballast


async def _downloading(db: Any) -> bool:
    listed = await repo_resources.list_resources(db)
    return any(t is not None and 0 < t.done < t.total for _r, t in listed)


async def test_a_disk_filling_mid_import_is_a_named_no_space_failure_and_the_next_import_heals(
    scene: Scene, small_disk: Path, log_events: Events
) -> None:
    """ENOSPC and 'database or disk is full' mid-import end as no_space, without a traceback."""
    scene.upstream.stall(KERNEL, after_bytes=8192, seconds=1.0)
    async with import_env(small_disk / "region", scene.region_key) as env:
        await env.add_source(scene.upstream, scene.stream)
        running = asyncio.create_task(env.importer.run_import("filling"))
        await eventually(lambda: _downloading(env.db))
        ballast = await asyncio.to_thread(fill, small_disk)
        summary = await running
        await asyncio.to_thread(ballast.unlink)
        healed = await env.importer.run_import("room again")
        holding = await held(env.db)
    assert summary.outcome == "failed"
    assert summary.failure == "no_space"
    assert summary.space_free is not None
    assert summary.space_free < 1 << 20
    assert any(e["event"] == "import_no_space" for e in log_events)
    assert not any(
        e["event"] in ("import_failed", "import_settle_failed") or "exc_info" in e
        for e in log_events
    )
    assert healed.outcome == "ok", healed.errors
    assert set(holding) >= NOBLE_AMD64


async def test_sets_held_from_before_with_unservable_names_never_break_publishing(
    tmp_path: Path, region_key: SigningKey, log_events: Events
) -> None:
    """A set stored before names were screened (300-byte file name) is skipped, the rest published."""
    async with import_env(tmp_path / "region", region_key) as env:
        good = await env.store.ingest_bytes(b"noble squashfs")
        bad = await env.store.ingest_bytes(b"jammy squashfs")
        await repo_import.write_wanted(
            env.db,
            [_wanted("noble", "squashfs", good, 14), _wanted("jammy", "s" * 300, bad, 14)],
            {good: 14, bad: 14},
        )
        snapshot = await publish_stream(env.db, env.publisher, region_key)
    assert snapshot is not None
    assert await published_sets(tmp_path / "region") == {
        ("ubuntu/noble", "amd64/generic", "20250718")
    }
    assert [e["name"] for e in log_events if e["event"] == "stream_entry_skipped"] == [
        "ubuntu/jammy"
    ]


def _wanted(release: str, filename: str, sha256: str, size: int) -> WantedSet:
    return WantedSet(
        name=f"ubuntu/{release}",
        architecture="amd64/generic",
        kflavor="generic",
        bootloader_type=None,
        rolling=False,
        extra={"title": release},
        version="20250718",
        label="stable",
        files=(WantedFile(filename=filename, filetype="squashfs", sha256=sha256, size=size),),
    )


async def test_a_file_name_of_the_longest_servable_length_is_imported_and_published(
    scene: Scene, log_events: Events
) -> None:
    """A 255-byte file name passes the served-name rule, so publishing it must not fail."""
    name = "k" * 255
    kernel = await asyncio.to_thread((scene.stream.root / KERNEL).read_bytes)
    scene.upstream.add_file(f"{KERNEL.rsplit('/', 1)[0]}/{name}", kernel)

    def rename(doc: dict[str, Any]) -> None:
        _set_item(doc, "boot-kernel", path=f"{KERNEL.rsplit('/', 1)[0]}/{name}")

    await asyncio.to_thread(edit_products, scene.stream.root, scene.upstream_key, rename)
    async with import_env(scene.root, scene.region_key) as env:
        await env.add_source(scene.upstream, scene.stream)
        summary = await env.importer.run_import("test")
        holding = await held(env.db)
    assert summary.outcome == "ok", summary.errors
    assert holding[GA_KEY] == ["20250718"]
    assert ("ubuntu/noble", "amd64/ga-24.04", "20250718") in await published_sets(scene.root)
    published_file = scene.root / "stream/current/ubuntu/amd64/ga-24.04/noble/20250718" / name
    assert await asyncio.to_thread(published_file.read_bytes) == kernel
