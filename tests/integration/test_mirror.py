"""`bootsync mirror` against a real (fake) upstream serving a signed sample stream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from common.errors import ConnectError, SignatureError, TamperedPayloadError
from common.mirror.samplestream import SampleStream, write_sample_stream
from common.mirror.sync import MirrorFailedError, MirrorOptions, run_mirror
from common.mirror.tree import KEYRING_NAME
from common.transfer.streams import FetchedDocument, TrustPolicy, read_stream
from common.trust.keyrings import SigningKey, aload_keyring
from common.trust.signing import averify_clearsigned
from simplestreams import (
    ItemFilter,
    filter_items,
    flatten,
    newest_versions,
    parse_index,
    parse_products,
)
from tests.fakes.upstream import FakeUpstream

V3 = "streams/v1/com.ubuntu.maas:stable:v3:download"
BOOTLOADERS = "streams/v1/com.ubuntu.maas:stable:1:bootloader-download"
NOBLE_AMD64 = (ItemFilter.parse("arch=amd64"), ItemFilter.parse("release=noble"))
# The second command of MAAS's local-mirror recipe.
GRUB_PXELINUX = (ItemFilter.parse("os~(grub*|pxelinux)"),)


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    key = SigningKey.create(
        tmp_path_factory.mktemp("k") / "gnupg", name="test mirror", email="mirror@test.invalid"
    )
    with key:
        yield key


@pytest.fixture(scope="session")
def stream(tmp_path_factory: pytest.TempPathFactory) -> SampleStream:
    return write_sample_stream(tmp_path_factory.mktemp("upstream"), file_size=32 << 10)


@pytest.fixture(scope="session")
def newer_stream(tmp_path_factory: pytest.TempPathFactory) -> SampleStream:
    """The same stream a month later: one new version per product, the oldest gone."""
    return write_sample_stream(
        tmp_path_factory.mktemp("upstream2"), file_size=32 << 10, newest=date(2025, 8, 15)
    )


@pytest.fixture
async def upstream(fake_upstream: FakeUpstream, stream: SampleStream) -> FakeUpstream:
    fake_upstream.serve_directory(stream.root)
    return fake_upstream


async def options(
    upstream: FakeUpstream,
    stream: SampleStream,
    target: Path,
    key: SigningKey | None,
    **kw: object,
) -> MirrorOptions:
    base = MirrorOptions(
        source_url=upstream.url("/"),
        target=target,
        keyring=await aload_keyring(stream.keyring),
        signing_key=key,
        filters=NOBLE_AMD64,
        show_progress=False,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def published_items(target: Path, document: str = V3) -> dict[str, str]:
    """path -> sha256 of every item one of our mirror's products documents (v3) lists."""
    products = parse_products((target / f"{document}.json").read_bytes())
    return {i.path: i.sha256 for i in flatten(products) if i.path and i.sha256}


def item_requests(upstream: FakeUpstream) -> list[str]:
    return [r.path for r in upstream.requests if not r.path.startswith("/streams/")]


async def test_mirror_lists_exactly_the_selected_newest_files_and_holds_them(
    upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """The mirror's own metadata names only noble/amd64 newest files, each present and intact."""
    summary = await run_mirror(await options(upstream, stream, tmp_path / "m", signing_key))
    items = published_items(tmp_path / "m")
    assert items, "the filters select something"
    assert all(p.startswith("noble/amd64/20250718/") for p in items)
    for path, sha in items.items():
        assert hashlib.sha256((tmp_path / "m" / path).read_bytes()).hexdigest() == sha
    on_disk = {
        str(p.relative_to(tmp_path / "m"))
        for p in (tmp_path / "m").rglob("*")
        if p.is_file() and ".bootsync" not in p.parts and "streams" not in p.parts
    }
    assert on_disk == set(items) | {KEYRING_NAME}
    assert summary.outcome == "ok"
    assert summary.files_fetched == len(set(items.values()))


async def test_mirror_metadata_is_signed_by_the_key_whose_keyring_it_publishes(
    upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """Every .sjson verifies against DIR/mirror-keyring.gpg and carries its .json twin."""
    target = tmp_path / "m"
    await run_mirror(await options(upstream, stream, target, signing_key))
    keyring = await aload_keyring(target / KEYRING_NAME)
    assert keyring.fingerprints == (signing_key.fingerprint,)
    doc = await averify_clearsigned((target / f"{V3}.sjson").read_bytes(), keyring)
    assert doc.payload == (target / f"{V3}.json").read_bytes()
    index = parse_index(
        (
            await averify_clearsigned((target / "streams/v1/index.sjson").read_bytes(), keyring)
        ).payload
    )
    assert all(e.path and e.path.endswith(".sjson") for e in index.entries.values())


async def test_second_run_downloads_nothing_and_rewrites_no_metadata(
    upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """Re-running against an unchanged upstream fetches only metadata and changes nothing."""
    target = tmp_path / "m"
    await run_mirror(await options(upstream, stream, target, signing_key))
    before = {p: p.stat().st_mtime_ns for p in (target / "streams/v1").iterdir()}
    fetched_first = len(item_requests(upstream))
    summary = await run_mirror(await options(upstream, stream, target, signing_key))
    assert len(item_requests(upstream)) == fetched_first
    assert summary.files_fetched == 0
    assert summary.metadata_changed is False
    assert {p: p.stat().st_mtime_ns for p in (target / "streams/v1").iterdir()} == before


async def test_new_upstream_version_replaces_the_old_one(
    upstream: FakeUpstream,
    stream: SampleStream,
    newer_stream: SampleStream,
    signing_key: SigningKey,
    tmp_path: Path,
) -> None:
    """With --max 1, a newer upstream version is fetched and the old files are removed."""
    target = tmp_path / "m"
    await run_mirror(await options(upstream, stream, target, signing_key))
    old = published_items(target)
    upstream.serve_directory(newer_stream.root)
    summary = await run_mirror(await options(upstream, newer_stream, target, signing_key))
    new = published_items(target)
    assert all(p.startswith("noble/amd64/20250815/") for p in new)
    assert not any((target / p).exists() for p in old)
    assert summary.files_removed >= len(old)


async def test_tampered_products_document_is_refused_and_nothing_is_written(
    upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """A products .sjson edited after signing fails the run before any file is written."""
    signed = (stream.root / f"{V3}.sjson").read_bytes()
    upstream.add_file(f"{V3}.sjson", signed.replace(b"noble", b"nobIe", 1))
    with pytest.raises(TamperedPayloadError, match=r"v3:download\.sjson"):
        await run_mirror(await options(upstream, stream, tmp_path / "m", signing_key))
    assert not (tmp_path / "m" / "streams").exists()
    assert item_requests(upstream) == []


async def test_persistently_corrupt_file_fails_the_run_and_keeps_the_previous_mirror(
    upstream: FakeUpstream,
    stream: SampleStream,
    newer_stream: SampleStream,
    signing_key: SigningKey,
    tmp_path: Path,
) -> None:
    """A file whose bytes never match fails the run; metadata and files stay as they were."""
    target = tmp_path / "m"
    await run_mirror(await options(upstream, stream, target, signing_key))
    index_before = (target / "streams/v1/index.sjson").read_bytes()
    served_before = published_items(target)
    upstream.serve_directory(newer_stream.root)
    bad = "noble/amd64/20250815/squashfs"
    upstream.flip_byte(bad, offset=100, times=1000)
    with pytest.raises(MirrorFailedError, match="squashfs") as failed:
        await run_mirror(await options(upstream, newer_stream, target, signing_key))
    assert failed.value.summary.files_failed == 1
    assert failed.value.summary.files_fetched > 0
    assert (target / "streams/v1/index.sjson").read_bytes() == index_before
    assert all((target / p).is_file() for p in served_before)
    assert not (target / bad).exists()


async def test_unsafe_item_path_upstream_is_refused_naming_file_and_field(
    upstream: FakeUpstream, stream: SampleStream, tmp_path: Path, signing_key: SigningKey
) -> None:
    """An item path with `..` in unsigned upstream metadata refuses its version, named by
    document and field; the other versions are mirrored."""
    doc = json.loads((stream.root / f"{V3}.json").read_bytes())
    product = next(iter(doc["products"].values()))
    version = next(iter(product["versions"].values()))
    refused = {item["path"] for item in version["items"].values()}
    version["items"]["squashfs"]["path"] = "../../etc/passwd"
    upstream.add_file(f"{V3}.json", json.dumps(doc).encode())
    opts = await options(
        upstream,
        stream,
        tmp_path / "m",
        signing_key,
        keyring=None,
        source_url=upstream.url("streams/v1/index.json"),
    )
    summary = await run_mirror(opts)
    assert [
        r for r in summary.refused if re.search(r"v3:download\.json: .*items\[squashfs\]\.path", r)
    ]
    mirrored = published_items(tmp_path / "m")
    assert mirrored, "the other versions were not mirrored"
    assert not refused & set(mirrored)
    assert not any(".." in p.split("/") for p in mirrored)


async def test_clearsigned_source_without_keyring_is_refused(
    upstream: FakeUpstream, stream: SampleStream, tmp_path: Path, signing_key: SigningKey
) -> None:
    """--no-verify only reads unsigned JSON; a clearsigned index needs a keyring."""
    opts = await options(
        upstream,
        stream,
        tmp_path / "m",
        signing_key,
        keyring=None,
        source_url=upstream.url("streams/v1/index.sjson"),
    )
    with pytest.raises(SignatureError, match="no keyring"):
        await run_mirror(opts)


async def test_unreachable_source_fails_with_a_connect_error(
    stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """A source nobody listens on ends the run with ConnectError naming the URL."""
    opts = MirrorOptions(
        source_url="http://127.0.0.1:9/",
        target=tmp_path / "m",
        keyring=await aload_keyring(stream.keyring),
        signing_key=signing_key,
        show_progress=False,
    )
    with pytest.raises(ConnectError, match=r"127\.0\.0\.1:9"):
        await run_mirror(opts)


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.cli",
        *args,
        env=env,
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


def cli_env(xdg: Path) -> dict[str, str]:
    return {**os.environ, "XDG_DATA_HOME": str(xdg), "PYTHONPATH": str(ROOT)}


ROOT = Path(__file__).resolve().parents[2]


async def test_cli_mirrors_with_filters_after_options_and_keeps_its_key_outside(
    upstream: FakeUpstream, stream: SampleStream, tmp_path: Path, xdg: Path
) -> None:
    """`bootsync mirror URL DIR --keyring K FILTER...` exits 0 and keeps its key in XDG data."""
    code, out, err = await run_cli(
        "mirror",
        upstream.url("/"),
        str(tmp_path / "m"),
        "--keyring",
        str(stream.keyring),
        "--no-progress",
        "arch=arm64",
        "release=jammy",
        env=cli_env(xdg),
    )
    assert code == 0, err
    assert "files fetched" in out
    assert all(p.startswith("jammy/arm64/") for p in published_items(tmp_path / "m"))
    assert (xdg / "bootsync/mirror-signing-key").is_dir()
    assert not list((tmp_path / "m").rglob("*.key"))


async def test_cli_reports_a_bad_filter_and_an_unreachable_source_with_nonzero_exit(
    stream: SampleStream, tmp_path: Path, xdg: Path
) -> None:
    """A malformed filter is a usage error (2); an unreachable source is an error (1)."""
    env = cli_env(xdg)
    code, _, err = await run_cli(
        "mirror",
        "http://127.0.0.1:9/",
        str(tmp_path / "m"),
        "--keyring",
        str(stream.keyring),
        "arch",
        env=env,
    )
    assert code == 2
    assert "arch" in err
    code, _, err = await run_cli(
        "mirror",
        "http://127.0.0.1:9/",
        str(tmp_path / "m"),
        "--keyring",
        str(stream.keyring),
        "--no-progress",
        env=env,
    )
    assert code == 1
    assert "127.0.0.1:9" in err


async def test_cli_refuses_a_signing_key_inside_the_mirror(
    stream: SampleStream, tmp_path: Path, xdg: Path
) -> None:
    """A --signing-key under DIR would be published, so the CLI refuses it."""
    code, _, err = await run_cli(
        "mirror",
        "http://127.0.0.1:9/",
        str(tmp_path / "m"),
        "--keyring",
        str(stream.keyring),
        "--signing-key",
        str(tmp_path / "m" / "key"),
        env=cli_env(xdg),
    )
    assert code != 0
    assert "inside the mirror" in err


def sstream_bin() -> Path:
    found = Path(os.environ.get("SSTREAM_BIN", ROOT / ".venv-simplestreams" / "bin"))
    if not (found / "sstream-mirror").exists():
        pytest.fail(f"python-simplestreams is not installed at {found}: run `make setup`")
    return found


async def test_canonical_sstream_mirror_verifies_and_copies_our_mirror(
    fake_upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """sstream-mirror --keyring mirror-keyring.gpg copies every file our metadata lists."""
    async with FakeUpstream() as source:
        source.serve_directory(stream.root)
        target = tmp_path / "m"
        await run_mirror(await options(source, stream, target, signing_key, filters=()))
    fake_upstream.serve_directory(target)
    out = tmp_path / "copy"
    empty_home = tmp_path / "gnupg"
    empty_home.mkdir(mode=0o700)
    proc = await asyncio.create_subprocess_exec(
        str(sstream_bin() / "sstream-mirror"),
        f"--keyring={target / KEYRING_NAME}",
        fake_upstream.url("/"),
        str(out),
        env={**os.environ, "GNUPGHOME": str(empty_home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    ours = published_items(target)
    assert ours
    for path, sha in ours.items():
        assert hashlib.sha256((out / path).read_bytes()).hexdigest() == sha
    copied = {
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and ".data" not in p.parts and "streams" not in p.parts
    }
    everything: set[str] = set()
    for products in (target / "streams/v1").glob("*.json"):
        if products.name != "index.json":
            everything |= {i.path for i in flatten(parse_products(products.read_bytes())) if i.path}
    assert copied == everything


async def test_sstream_mirror_rejects_our_metadata_under_a_foreign_keyring(
    fake_upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """Our signature is real: sstream-mirror with the upstream's keyring refuses our mirror."""
    async with FakeUpstream() as source:
        source.serve_directory(stream.root)
        await run_mirror(await options(source, stream, tmp_path / "m", signing_key))
    fake_upstream.serve_directory(tmp_path / "m")
    empty_home = tmp_path / "gnupg"
    empty_home.mkdir(mode=0o700)
    proc = await asyncio.create_subprocess_exec(
        str(sstream_bin() / "sstream-mirror"),
        f"--keyring={stream.keyring}",
        fake_upstream.url("/"),
        str(tmp_path / "copy"),
        env={**os.environ, "GNUPGHOME": str(empty_home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await proc.communicate()
    assert proc.returncode != 0
    assert not list(tmp_path.glob("copy/**/squashfs"))


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of every file under ``root``, the store included."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def assert_held(target: Path, items: dict[str, str]) -> None:
    for path, sha in items.items():
        assert hashlib.sha256((target / path).read_bytes()).hexdigest() == sha, path


async def test_a_run_with_other_filters_keeps_and_lists_what_earlier_runs_selected(
    upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """Runs accumulate: kernels, then bootloaders, leaves both on disk and in the signed metadata."""
    target = tmp_path / "m"
    await run_mirror(await options(upstream, stream, target, signing_key))
    kernels = published_items(target)
    summary = await run_mirror(
        await options(upstream, stream, target, signing_key, filters=GRUB_PXELINUX)
    )
    assert summary.files_removed == 0
    assert published_items(target) == kernels
    bootloaders = published_items(target, BOOTLOADERS)
    assert bootloaders
    assert all(p.startswith("bootloaders/") for p in bootloaders)
    assert_held(target, kernels | bootloaders)
    keyring = await aload_keyring(target / KEYRING_NAME)
    index = parse_index(
        (
            await averify_clearsigned((target / "streams/v1/index.sjson").read_bytes(), keyring)
        ).payload
    )
    assert {e.path for e in index.entries.values()} == {f"{V3}.sjson", f"{BOOTLOADERS}.sjson"}
    for document in (V3, BOOTLOADERS):
        signed = await averify_clearsigned((target / f"{document}.sjson").read_bytes(), keyring)
        assert signed.payload == (target / f"{document}.json").read_bytes()


async def test_delete_prunes_what_no_filter_of_the_run_selects(
    upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """With delete, earlier runs' kernels go and only this run's bootloaders stay listed and held."""
    target = tmp_path / "m"
    await run_mirror(await options(upstream, stream, target, signing_key))
    kernels = published_items(target)
    await run_mirror(await options(upstream, stream, target, signing_key, filters=GRUB_PXELINUX))
    summary = await run_mirror(
        await options(upstream, stream, target, signing_key, filters=GRUB_PXELINUX, delete=True)
    )
    assert summary.files_removed >= len(kernels)
    assert not any((target / p).exists() for p in kernels)
    assert not (target / f"{V3}.json").exists()
    assert_held(target, published_items(target, BOOTLOADERS))
    index = parse_index((target / "streams/v1/index.json").read_bytes())
    assert {e.path for e in index.entries.values()} == {f"{BOOTLOADERS}.json"}


async def test_cli_runs_the_documented_two_command_recipe_into_one_directory(
    upstream: FakeUpstream, stream: SampleStream, tmp_path: Path, xdg: Path
) -> None:
    """MAAS's recipe, word for word (--keyring=, --max=1, --progress), ends with both sets held."""
    target = tmp_path / "m"
    recipe = ("mirror", f"--keyring={stream.keyring}", upstream.url("/"), str(target))
    env = cli_env(xdg)
    code, _, err = await run_cli(
        *recipe, "arch=amd64", "release~(jammy|noble)", "--max=1", "--progress", env=env
    )
    assert code == 0, err
    kernels = published_items(target)
    code, out, err = await run_cli(*recipe, "os~(grub*|pxelinux)", "--max=1", "--progress", env=env)
    assert code == 0, err
    assert " 0 removed" in out
    assert published_items(target) == kernels
    assert {p.split("/")[0] for p in kernels} == {"jammy", "noble"}
    bootloaders = published_items(target, BOOTLOADERS)
    assert {p.split("/")[1] for p in bootloaders} == {"pxe", "uefi", "open-firmware"}
    assert_held(target, kernels | bootloaders)


async def test_cli_dry_run_prints_what_it_would_fetch_and_remove_and_writes_nothing(
    upstream: FakeUpstream,
    stream: SampleStream,
    signing_key: SigningKey,
    tmp_path: Path,
    xdg: Path,
) -> None:
    """--dry-run lists the fetches and removals, fetches no file and changes no file anywhere."""
    target = tmp_path / "m"
    await run_mirror(await options(upstream, stream, target, signing_key))
    kernels = published_items(target)
    before = files_under(target)
    fetched = len(item_requests(upstream))
    common = ("mirror", upstream.url("/"), "--keyring", str(stream.keyring), "--dry-run")
    code, out, err = await run_cli(
        *common, str(target), "--delete", "os~(grub*|pxelinux)", env=cli_env(xdg)
    )
    assert code == 0, err
    would_fetch = {line.split()[2] for line in out.splitlines() if line.startswith("would fetch")}
    would_remove = {line.split()[2] for line in out.splitlines() if line.startswith("would remove")}
    assert would_fetch
    assert all(p.startswith("bootloaders/") for p in would_fetch)
    assert set(kernels) <= would_remove
    assert f"{V3}.sjson" in would_remove
    assert "nothing was written" in out
    assert files_under(target) == before
    assert len(item_requests(upstream)) == fetched
    code, out, err = await run_cli(*common, str(tmp_path / "new"), "arch=amd64", env=cli_env(xdg))
    assert code == 0, err
    assert "would fetch" in out
    assert not (tmp_path / "new").exists()
    assert not (xdg / "bootsync").exists(), "a dry run makes no signing key either"


async def test_keep_upstream_metadata_publishes_the_signed_documents_unchanged(
    upstream: FakeUpstream, stream: SampleStream, tmp_path: Path
) -> None:
    """The upstream's signed documents are published as they are, and read with its keyring."""
    target = tmp_path / "m"
    await run_mirror(await options(upstream, stream, target, None, keep_upstream_metadata=True))
    signed = ["streams/v1/index.sjson", *(f"{d}.sjson" for d in (V3, BOOTLOADERS))]
    for path in signed:
        assert (target / path).read_bytes() == (stream.root / path).read_bytes()
    assert not (target / KEYRING_NAME).exists()
    assert not (target / "streams/v1/index.json").exists()

    async def local(path: str) -> FetchedDocument:
        body = await asyncio.to_thread((target / path).read_bytes)
        return FetchedDocument(url=str(target / path), body=body)

    read = await read_stream(
        local, "streams/v1/index.sjson", TrustPolicy(await aload_keyring(stream.keyring))
    )
    v3 = read.products["com.ubuntu.maas:stable:v3:download"]
    selected = newest_versions(
        filter_items(v3, lambda i: all(f.matches(i.fields) for f in NOBLE_AMD64))
    )
    items = {i.path: i.sha256 for i in flatten(selected) if i.path and i.sha256}
    assert items
    assert_held(target, items)


async def test_sstream_mirror_validates_a_kept_upstream_metadata_mirror_with_the_upstream_keyring(
    fake_upstream: FakeUpstream, stream: SampleStream, tmp_path: Path, xdg: Path
) -> None:
    """sstream-mirror --keyring=<upstream keyring> validates our --keep-upstream-metadata mirror."""
    target = tmp_path / "m"
    async with FakeUpstream() as source:
        source.serve_directory(stream.root)
        code, _, err = await run_cli(
            "mirror",
            f"--keyring={stream.keyring}",
            source.url("/"),
            str(target),
            "--keep-upstream-metadata",
            "--no-progress",
            *(str(f) for f in NOBLE_AMD64),
            env=cli_env(xdg),
        )
    assert code == 0, err
    assert not (xdg / "bootsync").exists(), "upstream metadata needs no signing key of ours"
    fake_upstream.serve_directory(target)
    out = tmp_path / "copy"
    empty_home = tmp_path / "gnupg"
    empty_home.mkdir(mode=0o700)
    proc = await asyncio.create_subprocess_exec(
        str(sstream_bin() / "sstream-mirror"),
        f"--keyring={stream.keyring}",
        "--max=1",
        fake_upstream.url("/"),
        str(out),
        *(str(f) for f in NOBLE_AMD64),
        env={**os.environ, "GNUPGHOME": str(empty_home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err_bytes = await proc.communicate()
    assert proc.returncode == 0, err_bytes.decode()
    copied = {
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and ".data" not in p.parts and "streams" not in p.parts
    }
    held = {
        str(p.relative_to(target))
        for p in target.rglob("*")
        if p.is_file() and ".bootsync" not in p.parts and "streams" not in p.parts
    }
    assert copied == held
    assert copied
    assert all(p.startswith("noble/amd64/20250718/") for p in copied)
    for path in copied:
        assert (out / path).read_bytes() == (target / path).read_bytes()


async def test_a_mirror_made_before_selections_were_kept_accumulates_from_its_own_metadata(
    upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """With a state file that lists only files, the published index.json gives the earlier selection."""
    target = tmp_path / "m"
    await run_mirror(await options(upstream, stream, target, signing_key))
    kernels = published_items(target)
    state = target / ".bootsync/state.json"
    state.write_text(json.dumps({"files": json.loads(state.read_bytes())["files"]}))
    summary = await run_mirror(
        await options(upstream, stream, target, signing_key, filters=GRUB_PXELINUX)
    )
    assert summary.files_removed == 0
    assert published_items(target) == kernels
    assert_held(target, kernels | published_items(target, BOOTLOADERS))
