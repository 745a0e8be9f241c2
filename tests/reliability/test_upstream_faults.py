"""The upstream fault matrix: every way an upstream misbehaves, against the region and the mirror.

Faults: a truncated body, a flipped byte, a wrong Content-Length, 503s, a
stall, a connection reset, a redirect loop, an endless body and a 1 B/s-style
drip. Each is switched on for good (it never wears off) for one file, and
separately for a source's signed index; each case is a region import or a
``bootsync mirror`` run of its own, with its own fake upstream. All cases run
at once in one module fixture (their retries overlap), each test reads its own.

Promised for every fault: the import or mirror run ends (no hang: each case
has a deadline), the error names the file or source and the fault, the bad
file is not published, nothing stored is corrupt, and the rest is fine — the
region imports and publishes every other image, and the other, healthy source
when the index is faulty; the mirror keeps the other files' verified blobs
and leaves its directory as it was. No case ends in a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from common.errors import BootsyncError
from common.mirror.samplestream import SampleStream, write_sample_stream
from common.mirror.sync import MirrorFailedError, MirrorOptions, run_mirror
from common.mirror.tree import STATE_DIR
from common.transfer.limits import MIN_METADATA_BYTES, TransferLimits
from common.trust.keyrings import SigningKey, aload_keyring
from region.db import catalogue as repo_catalogue
from region.images.importer import ImportSummary
from region.images.publish import SIGNED_INDEX_PATH
from simplestreams import ItemFilter, StreamFormatError
from tests.fakes.streams import short_dir
from tests.fakes.upstream import FakeUpstream
from tests.integration.region.import_harness import held as held_sets
from tests.integration.region.import_harness import import_env
from tests.reliability.checks import (
    held_blobs,
    signed_stream_problems,
    snapshot_problems,
    store_problems,
)
from tests.reliability.harness import Outcome, run_all
from tests.reliability.streams import Item, stream_items

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

FILE_SIZE = 16 << 10
# The slow faults (drip, stall) run under a minimum rate of 16 KiB/s over one second, so
# they fail at once; the others under the default rate (a loaded machine never trips it).
# Metadata is capped at 64 KiB, so an endless index is cut early.
QUICK = TransferLimits(min_rate=16 << 10, rate_window_s=1.0, max_metadata_bytes=MIN_METADATA_BYTES)
USUAL = TransferLimits(max_metadata_bytes=MIN_METADATA_BYTES)
INDEX = "streams/v1/index.sjson"
KERNEL = "noble/amd64/20250718/ga-24.04/generic/boot-kernel"
GA = ("ubuntu/noble", "amd64/ga-24.04")
HWE = ("ubuntu/noble", "amd64/hwe-24.04")
NOBLE_AMD64 = (ItemFilter.parse("arch=amd64"), ItemFilter.parse("release=noble"))
FOREVER = 1000  # uses of a fault: more than any retry policy makes
RETRIED = ("503s", "connection-reset", "truncate", "wrong-length")  # failures worth a retry


@dataclass(frozen=True)
class Fault:
    """How to break one path, and the words one of which the error must say."""

    apply: Callable[[FakeUpstream, str, int], None]  # (upstream, path, its size)
    named: tuple[str, ...]
    limits: TransferLimits = USUAL


FAULTS: dict[str, Fault] = {
    "truncate": Fault(
        lambda up, path, size: up.truncate(path, at_bytes=min(1024, size // 4), times=FOREVER),
        ("truncated", "ended after", "payload", "closed"),
    ),
    "flip-byte": Fault(
        lambda up, path, size: up.flip_byte(path, offset=size // 2, times=FOREVER),
        ("sha256", "signature", "tampered", "not signed", "bad"),
    ),
    "wrong-length": Fault(
        lambda up, path, size: up.wrong_length(path, announced=size + 4096),
        ("truncated", "ended after", "payload", "closed", "length", "size", "allows"),
    ),
    "503s": Fault(lambda up, path, size: up.fail(path, 503, times=FOREVER), ("503",)),
    "stall": Fault(
        lambda up, path, size: up.stall(path, after_bytes=size // 4, seconds=60, times=FOREVER),
        ("too slow", "stall", "deadline"),
        QUICK,
    ),
    "connection-reset": Fault(
        lambda up, path, size: up.reset(path, after_bytes=min(1024, size // 4), times=FOREVER),
        ("reset", "connect", "closed", "truncated", "ended after", "payload"),
    ),
    "redirect-loop": Fault(lambda up, path, size: up.redirect(path, path), ("redirect",)),
    "endless-body": Fault(
        lambda up, path, size: up.endless(path),
        ("more than", "oversize", "too large", "larger", "exceeds", "allows"),
    ),
    "drip": Fault(
        lambda up, path, size: up.drip(path, nbytes=16, every_s=0.05),
        ("too slow", "deadline"),
        QUICK,
    ),
}


def named(fault: str, text: str) -> bool:
    """Whether ``text`` names fault ``fault`` (one of its words, any case)."""
    return any(word in text.lower() for word in FAULTS[fault].named)


# --- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionCase:
    """What one region import under a fault left behind."""

    summary: ImportSummary
    held: dict[tuple[str, str], list[str]]  # (name, arch) -> complete versions
    errors: dict[str, str | None]  # source url -> its last_error
    faulty_url: str
    problems: list[str]  # corrupt blobs, incomplete snapshot, unverifiable stream
    blobs: set[str]


@dataclass(frozen=True)
class MirrorCase:
    """What one mirror run under a fault raised and left behind."""

    error: BaseException | None
    problems: list[str]
    blobs: set[str]
    published: bool  # whether the run wrote metadata into the mirror


@dataclass
class Matrix:
    """Every case's outcome, by (target, fault)."""

    stream: SampleStream
    items: dict[str, Item]
    region: dict[str, Outcome[Any]]  # RegionCase
    mirror: dict[str, Outcome[Any]]  # MirrorCase


async def region_case(
    root: Path, region_key: SigningKey, stream: SampleStream, fault: str, target: str
) -> RegionCase:
    """An import whose source breaks ``target`` (a file, or its index) with ``fault``.

    With a faulty index a second, healthy source offers the same images.
    """
    async with FakeUpstream() as faulty, FakeUpstream() as healthy:
        faulty.serve_directory(stream.root)
        healthy.serve_directory(stream.root)
        size = (stream.root / target).stat().st_size
        FAULTS[fault].apply(faulty, target, size)
        async with import_env(root, region_key, transfer=FAULTS[fault].limits) as env:
            sources = [await env.add_source(faulty, stream)]
            if target == INDEX:
                sources.append(await env.add_source(healthy, stream))
            summary = await env.importer.run_import(f"fault {fault}")
            held = await held_sets(env.db)
            errors = {
                s.url: (await repo_catalogue.get_status(env.db, s.id)).last_error for s in sources
            }
        keyring = root / "region-keyring.gpg"
        await asyncio.to_thread(keyring.write_bytes, await region_key.aexport_public())
        problems = [
            *await store_problems(root / "store"),
            *await snapshot_problems(root / "stream"),
            *await signed_stream_problems(root / "stream" / "current", keyring, SIGNED_INDEX_PATH),
        ]
        blobs = set(await asyncio.to_thread(held_blobs, root / "store"))
        return RegionCase(summary, held, errors, faulty.url("/"), problems, blobs)


async def mirror_case(
    root: Path, key: SigningKey, stream: SampleStream, fault: str, target: str
) -> MirrorCase:
    """A ``bootsync mirror`` run (noble/amd64) whose upstream breaks ``target`` with ``fault``."""
    async with FakeUpstream() as faulty:
        faulty.serve_directory(stream.root)
        size = (stream.root / target).stat().st_size
        FAULTS[fault].apply(faulty, target, size)
        error: BaseException | None = None
        try:
            await run_mirror(
                MirrorOptions(
                    source_url=faulty.url("/"),
                    target=root,
                    keyring=await aload_keyring(stream.keyring),
                    signing_key=key,
                    filters=NOBLE_AMD64,
                    show_progress=False,
                    transfer=FAULTS[fault].limits,
                )
            )
        except (BootsyncError, StreamFormatError) as exc:  # what the CLI prints in one line
            error = exc
    return MirrorCase(
        error=error,
        problems=await store_problems(root / STATE_DIR / "store"),
        blobs=set(await asyncio.to_thread(held_blobs, root / STATE_DIR / "store")),
        published=await asyncio.to_thread((root / "streams").exists),
    )


@pytest.fixture(scope="module")
def mirror_key() -> Iterator[SigningKey]:
    """The key the mirrors sign with."""
    with (
        short_dir("bsm") as home,
        SigningKey.create(home / "g", name="mirror", email="m@test.invalid") as key,
    ):
        yield key


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def matrix(
    tmp_path_factory: pytest.TempPathFactory,
    upstream_key: SigningKey,
    region_key: SigningKey,
    mirror_key: SigningKey,
) -> AsyncIterator[Matrix]:
    """Every fault against a file and an index, for the region and the mirror, run at once."""
    work = tmp_path_factory.mktemp("faults")
    stream = await asyncio.to_thread(
        write_sample_stream, work / "up", file_size=FILE_SIZE, versions=1, signing_key=upstream_key
    )
    targets = {"file": KERNEL, "index": INDEX}
    # Retried faults first: they wait longest, and the others fill the gaps.
    order = sorted(FAULTS, key=lambda f: f not in RETRIED)
    cases = [(f, t) for f in order for t in targets]
    scenarios: dict[str, Callable[[], Awaitable[RegionCase | MirrorCase]]] = {}
    for f, t in cases:
        scenarios[f"region {f}@{t}"] = partial(
            region_case, work / f"region-{f}-{t}", region_key, stream, f, targets[t]
        )
        scenarios[f"mirror {f}@{t}"] = partial(
            mirror_case, work / f"mirror-{f}-{t}", mirror_key, stream, f, targets[t]
        )
    outcomes = await run_all(scenarios, at_once=12)
    region = {k.removeprefix("region "): v for k, v in outcomes.items() if k.startswith("region")}
    mirror = {k.removeprefix("mirror "): v for k, v in outcomes.items() if k.startswith("mirror")}
    for name, outcome in outcomes.items():
        print(f"{name}: {outcome.seconds} s")
    yield Matrix(stream, stream_items(stream.root), region, mirror)


# --- the region ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_faulty_file_fails_alone_and_the_region_publishes_the_rest(
    matrix: Matrix, fault: str
) -> None:
    """The import ends naming the file and fault; its image is not published, the rest is."""
    outcome = matrix.region[f"{fault}@file"]
    case: RegionCase = outcome.result()
    assert not outcome.crashes(), outcome.crashes()
    assert case.summary.outcome == "failed"
    assert case.summary.files_failed == 1
    assert [e for e in case.summary.errors if KERNEL in e and named(fault, e)], case.summary.errors
    assert GA not in case.held
    assert case.held[HWE] == ["20250718"]
    assert case.summary.published
    assert not case.problems, case.problems
    assert matrix.items[KERNEL].sha256 not in case.blobs
    hwe = KERNEL.replace("ga-24.04", "hwe-24.04")
    others = [hwe, hwe.replace("boot-kernel", "boot-initrd"), "noble/amd64/20250718/squashfs"]
    others += [p for p in matrix.items if p.startswith("bootloaders/")]
    assert {matrix.items[p].sha256 for p in others} <= case.blobs


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_faulty_index_fails_its_source_alone_and_the_other_source_imports(
    matrix: Matrix, fault: str
) -> None:
    """The faulty source's error names the fault; the healthy source's images are published."""
    outcome = matrix.region[f"{fault}@index"]
    case: RegionCase = outcome.result()
    assert not outcome.crashes(), outcome.crashes()
    error = case.errors[case.faulty_url]
    assert error is not None
    assert named(fault, error), error
    assert [e for e in case.summary.errors if case.faulty_url in e], case.summary.errors
    assert [u for u, e in case.errors.items() if e is None and u != case.faulty_url]
    assert case.held[GA] == case.held[HWE] == ["20250718"]
    assert case.summary.published
    assert not case.problems, case.problems


# --- the mirror ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_faulty_file_fails_the_mirror_run_naming_it_and_keeps_the_rest(
    matrix: Matrix, fault: str
) -> None:
    """The run ends naming the file and fault, publishes nothing, keeps the other files' blobs."""
    outcome = matrix.mirror[f"{fault}@file"]
    case: MirrorCase = outcome.result()
    assert not outcome.crashes(), outcome.crashes()
    assert isinstance(case.error, MirrorFailedError), case.error
    assert [f for f in case.error.summary.failures if KERNEL in f and named(fault, f)], (
        case.error.summary.failures
    )
    assert not case.published
    assert not case.problems, case.problems
    assert matrix.items[KERNEL].sha256 not in case.blobs
    others = {i.sha256 for p, i in matrix.items.items() if p.startswith("noble/amd64/")}
    assert others - {matrix.items[KERNEL].sha256} <= case.blobs


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_faulty_index_ends_the_mirror_run_with_the_fault_named(
    matrix: Matrix, fault: str
) -> None:
    """The run ends with one error naming the index and the fault; nothing is written."""
    outcome = matrix.mirror[f"{fault}@index"]
    case: MirrorCase = outcome.result()
    assert not outcome.crashes(), outcome.crashes()
    assert case.error is not None
    assert named(fault, str(case.error)), case.error
    assert "index" in str(case.error), case.error
    assert not case.published
    assert not case.blobs
