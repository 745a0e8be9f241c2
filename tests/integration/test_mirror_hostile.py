"""`bootsync mirror` against validly signed but hostile metadata, and failures of any kind."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.mirror.sync import MirrorOptions, run_mirror
from common.mirror.tree import MirrorTree
from common.trust.keyrings import SigningKey, aload_keyring
from simplestreams import ItemFilter, flatten, parse_products
from tests.fakes.hostile import V3, edit_products, newest_version
from tests.fakes.streams import short_dir
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
GA = "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04"
NOBLE_AMD64 = (ItemFilter.parse("arch=amd64"), ItemFilter.parse("release=noble"))
DOC = f"streams/v1/{V3}.sjson"


@pytest.fixture(scope="module")
def mirror_key() -> Iterator[SigningKey]:
    """The key that signs the mirror's own metadata."""
    with (
        short_dir("bsm") as home,
        SigningKey.create(home / "g", name="test mirror", email="mirror@test.invalid") as key,
    ):
        yield key


@pytest.fixture
def stream(tmp_path: Path, upstream_key: SigningKey) -> SampleStream:
    """A fresh one-version sample stream signed by the session's upstream key (tests edit it)."""
    return write_sample_stream(
        tmp_path / "upstream", file_size=16 << 10, versions=1, signing_key=upstream_key
    )


@dataclass(frozen=True)
class Served:
    """A fresh sample stream, the key that signs it, and the upstream serving it."""

    server: FakeUpstream
    stream: SampleStream
    key: SigningKey


@pytest.fixture
def served(fake_upstream: FakeUpstream, stream: SampleStream, upstream_key: SigningKey) -> Served:
    """``stream`` served by the fake upstream."""
    fake_upstream.serve_directory(stream.root)
    return Served(server=fake_upstream, stream=stream, key=upstream_key)


async def options(
    upstream: FakeUpstream, stream: SampleStream, target: Path, key: SigningKey
) -> MirrorOptions:
    """Mirror noble/amd64 of ``stream`` served by ``upstream`` into ``target``."""
    return MirrorOptions(
        source_url=upstream.url("/"),
        target=target,
        keyring=await aload_keyring(stream.keyring),
        signing_key=key,
        filters=NOBLE_AMD64,
        show_progress=False,
    )


def published_items(target: Path) -> dict[str, str]:
    """path -> sha256 of every item the mirror's own v3 products document lists."""
    products = parse_products((target / "streams" / "v1" / f"{V3}.json").read_bytes())
    return {i.path: i.sha256 for i in flatten(products) if i.path and i.sha256}


def store_is_intact(target: Path) -> bool:
    """True when every blob in the mirror's store hashes to its name."""
    blobs = [p for p in (target / ".bootsync" / "store").rglob("*") if p.is_file()]
    named = [p for p in blobs if len(p.name) == 64]
    return bool(named) and all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name for p in named)


def _kernel(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(newest_version(doc, GA)["items"]["boot-kernel"])


def long_segment(_target: Path) -> Callable[[dict[str, Any]], None]:
    """The GA kernel's file name becomes 300 bytes long."""

    def edit(doc: dict[str, Any]) -> None:
        path = _kernel(doc)["path"]
        newest_version(doc, GA)["items"]["boot-kernel"]["path"] = (
            path.rsplit("/", 1)[0] + "/" + "k" * 300
        )

    return edit


def long_path(_target: Path) -> Callable[[dict[str, Any]], None]:
    """The GA kernel's path becomes 4,500 bytes long, in segments of 100."""

    def edit(doc: dict[str, Any]) -> None:
        newest_version(doc, GA)["items"]["boot-kernel"]["path"] = "/".join(["d" * 99] * 45)

    return edit


def into_the_store(target: Path) -> Callable[[dict[str, Any]], None]:
    """The GA kernel's path points at the squashfs blob inside the mirror's own store."""

    def edit(doc: dict[str, Any]) -> None:
        squashfs = newest_version(doc, GA)["items"]["squashfs"]["sha256"]
        blob = MirrorTree(target).store.path_for(squashfs)
        newest_version(doc, GA)["items"]["boot-kernel"]["path"] = str(blob.relative_to(target))

    return edit


HOSTILE = {
    "300-byte segment": (long_segment, "is 300 bytes, more than 255"),
    "4,500-byte path": (long_path, "more than 1024"),
    "path into .bootsync": (into_the_store, "path segment '.bootsync' starts with '.'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_hostile_item_is_refused_naming_file_and_field_and_the_rest_is_mirrored(
    served: Served, mirror_key: SigningKey, tmp_path: Path, case: str
) -> None:
    """The item's version is refused, nothing is written for it, the store stays intact."""
    make_edit, reason = HOSTILE[case]
    target = tmp_path / "m"
    await run_mirror(await options(served.server, served.stream, target, mirror_key))
    before = published_items(target)
    await asyncio.to_thread(edit_products, served.stream.root, served.key, make_edit(target))
    summary = await run_mirror(await options(served.server, served.stream, target, mirror_key))
    after = published_items(target)
    (refusal,) = summary.refused
    assert refusal.startswith(served.server.url(DOC) + f": products[{GA}].versions[")
    assert ".items[boot-kernel].path: " in refusal
    assert reason in refusal
    assert summary.outcome == "ok"
    assert "noble/amd64/20250718/hwe-24.04/generic/boot-kernel" in after
    assert set(after) <= set(before)
    assert await asyncio.to_thread(store_is_intact, target)
    for path, sha256 in after.items():
        assert hashlib.sha256((target / path).read_bytes()).hexdigest() == sha256


async def run_cli(*args: str, xdg: Path) -> tuple[int, str, str]:
    """Run ``bootsync`` in a child process; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.cli",
        *args,
        env={**os.environ, "XDG_DATA_HOME": str(xdg), "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def xdg() -> Iterator[Path]:
    """A short XDG_DATA_HOME: gpg-agent's socket path must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bsx", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_cli_names_a_refused_item_and_exits_non_zero_without_a_traceback(
    served: Served, tmp_path: Path, xdg: Path
) -> None:
    """A 300-byte file name: the rest is mirrored, the refusal is printed, the exit code is 1."""
    await asyncio.to_thread(edit_products, served.stream.root, served.key, long_segment(tmp_path))
    code, out, err = await run_cli(
        "mirror",
        served.server.url("/"),
        str(tmp_path / "m"),
        "--keyring",
        str(served.stream.keyring),
        "--no-progress",
        "arch=amd64",
        "release=noble",
        xdg=xdg,
    )
    assert code == 1, err
    assert "Traceback" not in err
    assert f"{DOC}: products[{GA}]" in err
    assert ".items[boot-kernel].path" in err
    assert "files fetched" in out
    assert "noble/amd64/20250718/hwe-24.04/generic/boot-kernel" in published_items(tmp_path / "m")


async def test_cli_reports_a_redirect_loop_as_that_source_s_error(
    fake_upstream: FakeUpstream, stream: SampleStream, tmp_path: Path, xdg: Path
) -> None:
    """An index redirecting to itself for ever ends with a clean error naming it, exit 1."""
    fake_upstream.redirect("streams/v1/index.sjson", "streams/v1/index.sjson")
    code, _, err = await run_cli(
        "mirror",
        fake_upstream.url("/"),
        str(tmp_path / "m"),
        "--keyring",
        str(stream.keyring),
        "--no-progress",
        xdg=xdg,
    )
    assert code == 1
    assert "Traceback" not in err
    assert f"bootsync mirror: error: {fake_upstream.url('streams/v1/index.sjson')}" in err


async def test_cli_reports_a_local_failure_cleanly(
    fake_upstream: FakeUpstream, stream: SampleStream, tmp_path: Path, xdg: Path
) -> None:
    """A mirror directory that is a file is an error message and exit 1, not a traceback."""
    fake_upstream.serve_directory(stream.root)
    not_a_dir = tmp_path / "m"
    not_a_dir.write_bytes(b"a file")
    code, _, err = await run_cli(
        "mirror",
        fake_upstream.url("/"),
        str(not_a_dir),
        "--keyring",
        str(stream.keyring),
        "--no-progress",
        xdg=xdg,
    )
    assert code == 1
    assert "Traceback" not in err
    assert "bootsync mirror: error: " in err
    assert str(not_a_dir) in err


async def test_a_file_name_of_the_longest_servable_length_is_mirrored(
    served: Served, mirror_key: SigningKey, tmp_path: Path
) -> None:
    """A 255-byte file name passes the served-name rule, so the mirror lays it out."""
    kernel_path = "noble/amd64/20250718/ga-24.04/generic/boot-kernel"
    long_name = kernel_path.rsplit("/", 1)[0] + "/" + "k" * 255
    kernel = await asyncio.to_thread((served.stream.root / kernel_path).read_bytes)
    served.server.add_file(long_name, kernel)

    def rename(doc: dict[str, Any]) -> None:
        newest_version(doc, GA)["items"]["boot-kernel"]["path"] = long_name

    await asyncio.to_thread(edit_products, served.stream.root, served.key, rename)
    target = tmp_path / "m"
    summary = await run_mirror(await options(served.server, served.stream, target, mirror_key))
    assert summary.refused == ()
    assert long_name in published_items(target)
    assert await asyncio.to_thread((target / long_name).read_bytes) == kernel
