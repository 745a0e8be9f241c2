"""The hostile-metadata matrix: validly signed streams that say bad things, item by item.

Each case edits one product version of a one-version sample stream (the
noble/amd64 GA kernel, its squashfs, its product's names, or a bootloader)
and signs the result again with the upstream's key, as a compromised mirror
would: the signatures verify, only the content lies. Paths (absolute, ``..``,
a 300-byte segment, a 4,500-byte path, ``.hidden``, into ``.bootsync/``,
``maas.meta``), sizes (negative, 10^15, not the file's), hashes (not hex, the
wrong length, one sha256 with two sizes), nesting, duplicates, and names
hostile to a rack's layout.

Every case runs against the region (an import, then a second one), against
``bootsync mirror`` (everything, newest version) and against a rack's layout
of what the region then publishes. All cases run at once in one module
fixture; each test reads its own. Promised: the version holding the bad item
is refused with the field and the reason named, the rest is imported,
mirrored and laid out, the API (held sets) and the published stream agree,
nothing stored is corrupt, nothing is written inside ``.bootsync/`` from
metadata, and no case ends in a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from common.errors import BootsyncError
from common.mirror.samplestream import SampleStream, write_sample_stream
from common.mirror.sync import MirrorFailedError, MirrorOptions, MirrorSummary, run_mirror
from common.mirror.tree import KEYRING_NAME as MIRROR_KEYRING
from common.mirror.tree import STATE_DIR
from common.trust.keyrings import SigningKey, aload_keyring
from rack.layout import RackLayout, plan_layout
from region.db import catalogue as repo_catalogue
from region.images.importer import ImportSummary
from region.images.publish import PRODUCTS_PATH, SIGNED_INDEX_PATH
from simplestreams import ProductList, StreamFormatError, flatten, parse_products, path_problem
from tests.fakes.hostile import META, dump, newest_version, read_products, write_products
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

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

FILE_SIZE = 16 << 10
V3 = "com.ubuntu.maas:stable:v3:download"
BOOTLOADERS = "com.ubuntu.maas:stable:1:bootloader-download"
GA = "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04"
HWE = "com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04"
GRUB = "com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64"
GA_KEY = ("ubuntu/noble", "amd64/ga-24.04")
HWE_KEY = ("ubuntu/noble", "amd64/hwe-24.04")
GRUB_KEY = ("grub-efi-signed/uefi", "amd64/generic")
VERSION = "20250718"
BOOT_VERSION = "20250718.0"
Doc = dict[str, Any]


# --- the cases ------------------------------------------------------------------------------


def _item(doc: Doc, name: str, product: str = GA) -> Doc:
    item: Doc = newest_version(doc, product)["items"][name]
    return item


def _set(name: str, product: str = GA, **fields: object) -> Callable[[Doc], None]:
    return lambda doc: _item(doc, name, product).update(fields)


def _rename_file(name: str, new: str, product: str = GA) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        item = _item(doc, name, product)
        item["path"] = item["path"].rsplit("/", 1)[0] + "/" + new

    return edit


def _kernel_path(make: Callable[[str], str]) -> Callable[[Doc], None]:
    return lambda doc: _item(doc, "boot-kernel").update(
        path=make(_item(doc, "boot-kernel")["path"])
    )


def _hidden_version(doc: Doc) -> None:
    versions = doc["products"][GA]["versions"]
    versions[".hidden"] = versions.pop(max(versions))


def _into_the_mirror_store(doc: Doc) -> None:
    squashfs = _item(doc, "squashfs")["sha256"]
    _item(doc, "boot-kernel")["path"] = f".bootsync/store/sha256/{squashfs[:2]}/{squashfs}"


def _resize(delta: int) -> Callable[[Doc], None]:
    return lambda doc: _item(doc, "boot-kernel").update(
        size=_item(doc, "boot-kernel")["size"] + delta
    )


def _one_sha_two_sizes(doc: Doc) -> None:
    ga = _item(doc, "boot-kernel")
    _item(doc, "boot-kernel", HWE).update(sha256=ga["sha256"], size=ga["size"] + 1)


def _one_path_two_contents(doc: Doc) -> None:
    _item(doc, "boot-kernel", HWE)["path"] = _item(doc, "boot-kernel")["path"]


def _deep_nesting(doc: Doc) -> None:
    doc["products"][GA]["notes"] = "NEST"  # the text is spliced in by _raw_edits


def _items_a_list(doc: Doc) -> None:
    versions = doc["products"][GA]["versions"]
    versions[max(versions)]["items"] = list(versions[max(versions)]["items"].values())


def _duplicate_product_key(doc: Doc) -> None:
    doc["products"][GA]["notes"] = "DUPLICATE"  # the text is spliced in by _raw_edits


def _set_product(**fields: object) -> Callable[[Doc], None]:
    return lambda doc: doc["products"][GA].update(fields)


@dataclass(frozen=True)
class Case:
    """One hostile edit, where its refusal must point, and why.

    ``where``: a text the refusal must contain (the field); ``why``: words one
    of which it must contain (the reason). ``scope``: what goes with the bad
    item — its product ``version`` (the GA kernel's: noble/amd64 GA), or the
    whole products ``document`` (JSON nobody can read the same way twice).
    ``refused_by``: the parts that must refuse it; a name only a rack's layout
    cannot hold may be imported and mirrored, and the mirror lays files out by
    path, not by name. ``at_download``: the lie shows only in the bytes, so the
    mirror run fails naming the file. ``rest_missing``: part → why "the rest
    imports" does not hold there yet (those tests are strict xfails).
    """

    edit: Callable[[Doc], None]
    where: str
    why: tuple[str, ...]
    content_id: str = V3
    scope: str = "version"
    refused_by: frozenset[str] = frozenset({"region", "mirror", "rack"})
    at_download: bool = False
    rest_missing: Mapping[str, str] = field(default_factory=dict)
    bad: str = GA  # the product whose version holds the bad item

    @property
    def bad_key(self) -> tuple[str, str]:
        """The (name, architecture) the region keys the bad version's image by."""
        return GA_KEY if self.bad == GA else HWE_KEY

    @property
    def good_key(self) -> tuple[str, str]:
        """The other noble/amd64 image, which must import."""
        return HWE_KEY if self.bad == GA else GA_KEY


KERNEL_PATH = "items[boot-kernel].path"
RACK_ONLY = frozenset({"rack"})
BY_NAME = frozenset({"region", "rack"})  # names a mirror never lays anything out by
CASES: dict[str, Case] = {
    # paths
    "absolute path": Case(_kernel_path(lambda p: "/" + p), KERNEL_PATH, ("absolute",)),
    "dot-dot path": Case(
        _kernel_path(lambda p: "noble/amd64/../../../../etc/passwd"),
        KERNEL_PATH,
        ("'..'",),
    ),
    "300-byte segment": Case(_rename_file("boot-kernel", "k" * 300), KERNEL_PATH, ("300 bytes",)),
    "4,500-byte path": Case(
        _kernel_path(lambda p: "/".join(["d" * 250] * 18) + "/boot-kernel"),
        KERNEL_PATH,
        ("more than 1024",),
    ),
    ".hidden version": Case(
        _hidden_version, "versions[.hidden]", ("starts with '.'",), refused_by=BY_NAME
    ),
    ".squashfs file": Case(
        _rename_file("squashfs", ".squashfs"), "items[squashfs].path", ("starts with '.'",)
    ),
    "path into .bootsync/": Case(_into_the_mirror_store, KERNEL_PATH, ("starts with '.'",)),
    "kernel named maas.meta": Case(
        _rename_file("boot-kernel", "maas.meta"), "maas.meta", ("metadata",), refused_by=RACK_ONLY
    ),
    "bootloader named maas.meta": Case(
        _rename_file("grub2-signed", "maas.meta", GRUB),
        "maas.meta",
        ("metadata",),
        content_id=BOOTLOADERS,
        refused_by=RACK_ONLY,
    ),
    # sizes
    "negative size": Case(
        _set("boot-kernel", size=-1),
        "items[boot-kernel].size",
        ("negative",),
    ),
    "size 10^15": Case(
        _set("boot-kernel", size=10**15), "items[boot-kernel].size", ("largest item",)
    ),
    "size not the file's": Case(_resize(-100), "boot-kernel", ("size", "allows"), at_download=True),
    # hashes
    "sha256 not hex": Case(_set("boot-kernel", sha256="z" * 64), "sha256", ("hex",)),
    "sha256 of 63 digits": Case(
        lambda doc: _item(doc, "boot-kernel").update(
            sha256=_item(doc, "boot-kernel")["sha256"][:63]
        ),
        "sha256",
        ("hex",),
    ),
    "one sha256, two sizes": Case(
        _one_sha_two_sizes,
        "boot-kernel",
        ("size",),
        rest_missing={
            "region": "one sha256 listed with two sizes refuses the whole import "
            "(Importer._plan), not only the versions that list it",
            "mirror": "one sha256 listed with two sizes fails the whole run "
            "(simplestreams.plan_downloads raises), not only the versions that list it",
        },
    ),
    # nesting
    "100,000-deep nesting": Case(
        _deep_nesting,
        V3,
        ("nest",),
        scope="document",
    ),
    "items not an object": Case(_items_a_list, "items", ("expected an object",)),
    # duplicates
    "duplicate product key": Case(
        _duplicate_product_key,
        GA,
        ("duplicate",),
        scope="document",
    ),
    "one path, two contents": Case(
        _one_path_two_contents,
        "boot-kernel",
        ("sha256", "twice", "two"),
        bad=HWE,
        rest_missing={
            "mirror": "two items at one path with different content are caught only at "
            "download, and the run then publishes nothing",
        },
    ),
    # names hostile to a rack's layout
    "label ../../etc": Case(
        _set_product(label="../../etc"), ".label", ("'/'",), refused_by=BY_NAME
    ),
    "subarch with a slash": Case(
        _set_product(subarch="ga-24.04/../../x"), ".subarch", ("'/'",), refused_by=BY_NAME
    ),
}


def _raw_edits(text: str, doc: Doc) -> str:
    """Splice in what JSON values cannot say: deep nesting, a key given twice."""
    if '"NEST"' in text:
        # One bracket a line: clearsigning takes lines of up to 19,000 bytes.
        text = text.replace('"NEST"', "[\n" * 100_000 + "]\n" * 100_000)
    if '"DUPLICATE"' in text:
        # The GA product once more, before the real one, pointing its kernel elsewhere.
        shadow = json.loads(json.dumps(doc["products"][GA]))
        shadow.pop("notes")
        version = shadow["versions"][max(shadow["versions"])]
        version["items"]["boot-kernel"]["path"] = "noble/amd64/elsewhere/boot-kernel"
        text = text.replace(f'"{GA}": {{', f'"{GA}": {json.dumps(shadow)},\n  "{GA}": {{', 1)
    return text


def _item_paths(doc: Doc) -> dict[tuple[str, str, str], str]:
    return {
        (pname, vname, iname): item["path"]
        for pname, product in doc["products"].items()
        for vname, version in product["versions"].items()
        if isinstance(version.get("items"), dict)
        for iname, item in version["items"].items()
        if isinstance(item.get("path"), str)
    }


def _serve_moved(root: Path, before: Doc, after: Doc) -> None:
    """Serve a file whose path an edit changed at its new path too, where a server could."""
    old = _item_paths(before)
    for key, path in _item_paths(after).items():
        if key not in old or old[key] == path or path_problem(path) is not None:
            continue
        target = root / path
        try:
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / old[key], target)
        except OSError:  # a name no file system takes: no server serves it either
            continue


def hostile_stream(base: SampleStream, root: Path, key: SigningKey, case: Case) -> SampleStream:
    """A copy of ``base`` under ``root`` with ``case``'s edit, signed again by ``key``."""
    shutil.copytree(base.root, root)
    doc = read_products(root, case.content_id)
    before = json.loads(json.dumps(doc))
    case.edit(doc)
    _serve_moved(root, before, doc)
    write_products(root, key, doc)
    text = _raw_edits(dump(doc).decode(), doc)
    if text != dump(doc).decode():
        name = f"{case.content_id}"
        (root / META / f"{name}.json").write_text(text)
        (root / META / f"{name}.sjson").write_bytes(key.clearsign(text.encode()))
    return dataclasses.replace(base, root=root, keyring=root / base.keyring.name)


# --- running one case ---------------------------------------------------------------------


@dataclass(frozen=True)
class RegionRun:
    """What two imports of a hostile stream left behind."""

    first: ImportSummary
    second: ImportSummary
    held: dict[tuple[str, str], list[str]]
    published: dict[tuple[str, str], list[str]]  # what the stream lists, the same way
    said: list[str]  # every error and warning the import and the source carry
    problems: list[str]
    versions: set[tuple[str, str]]  # (product, version) the published stream lists
    layout: RackLayout  # a rack's layout of the published stream


@dataclass(frozen=True)
class MirrorRun:
    """What one mirror run of a hostile stream raised and left behind."""

    summary: MirrorSummary | None
    error: BaseException | None
    listed: set[str]  # item paths the mirror's metadata lists
    blobs: set[str]  # what its store holds
    problems: list[str]
    state_ok: bool  # .bootsync/state.json absent or valid JSON


def published_sets(products: ProductList) -> dict[tuple[str, str], list[str]]:
    """(name, architecture) → versions, of the region's published products."""
    found: dict[tuple[str, str], list[str]] = {}
    for p in products.products.values():
        key = (f"{p.attrs['os']}/{p.attrs['release']}", f"{p.attrs['arch']}/{p.attrs['subarch']}")
        if "bootloader-type" in p.attrs:
            key = (f"{p.attrs['os']}/{p.attrs['bootloader-type']}", key[1])
        found[key] = sorted(p.versions)
    return found


async def region_run(root: Path, region_key: SigningKey, stream: SampleStream) -> RegionRun:
    """Two imports of ``stream`` into a region under ``root``; what they left."""
    async with FakeUpstream() as upstream:
        upstream.serve_directory(stream.root)
        async with import_env(root, region_key) as env:
            source = await env.add_source(upstream, stream)
            first = await env.importer.run_import("hostile")
            second = await env.importer.run_import("hostile again")
            held = await held_sets(env.db)
            status = await repo_catalogue.get_status(env.db, source.id)
    current = root / "stream" / "current"
    if await asyncio.to_thread((current / PRODUCTS_PATH).exists):
        products = parse_products(await asyncio.to_thread((current / PRODUCTS_PATH).read_bytes))
    else:  # nothing was ever published
        products = ProductList(content_id="none", datatype="", updated="", attrs={}, products={})
    keyring = root / "region-keyring.gpg"
    await asyncio.to_thread(keyring.write_bytes, await region_key.aexport_public())
    return RegionRun(
        first=first,
        second=second,
        held={k: sorted(v) for k, v in held.items()},
        published=published_sets(products),
        said=[*first.errors, *second.errors, *status.warnings, status.last_error or ""],
        problems=[
            *await store_problems(root / "store"),
            *await snapshot_problems(root / "stream"),
            *await signed_stream_problems(current, keyring, SIGNED_INDEX_PATH),
        ],
        versions={(p.name, v) for p in products.products.values() for v in p.versions},
        layout=plan_layout([products]),
    )


async def mirror_run(root: Path, key: SigningKey, stream: SampleStream) -> MirrorRun:
    """``bootsync mirror`` of all of ``stream`` (newest versions) into ``root``."""
    async with FakeUpstream() as upstream:
        upstream.serve_directory(stream.root)
        summary: MirrorSummary | None = None
        error: BaseException | None = None
        try:
            summary = await run_mirror(
                MirrorOptions(
                    source_url=upstream.url("/"),
                    target=root,
                    keyring=await aload_keyring(stream.keyring),
                    signing_key=key,
                    show_progress=False,
                )
            )
        except (BootsyncError, StreamFormatError) as exc:  # what the CLI prints in one line
            error = exc
    listed: set[str] = set()
    for doc in await asyncio.to_thread(lambda: sorted((root / "streams" / "v1").glob("*.json"))):
        if doc.name != "index.json":
            raw = await asyncio.to_thread(doc.read_bytes)
            listed |= {i.path for i in flatten(parse_products(raw)) if i.path}
    state = root / STATE_DIR / "state.json"
    try:
        json.loads(await asyncio.to_thread(state.read_bytes))
        state_ok = True
    except FileNotFoundError:
        state_ok = True
    except ValueError:
        state_ok = False
    return MirrorRun(
        summary=summary,
        error=error,
        listed=listed,
        blobs=set(await asyncio.to_thread(held_blobs, root / STATE_DIR / "store")),
        problems=[
            *await store_problems(root / STATE_DIR / "store"),
            *await signed_stream_problems(root, root / MIRROR_KEYRING, "streams/v1/index.sjson"),
        ],
        state_ok=state_ok,
    )


@dataclass
class Matrix:
    """Every case's region and mirror outcome, and the untouched stream's item paths."""

    region: dict[str, Outcome[Any]]  # RegionRun
    mirror: dict[str, Outcome[Any]]  # MirrorRun
    paths: dict[str, dict[str, str]]  # case -> product/version/item -> path in its stream
    shas: dict[str, dict[str, str]]  # case -> path -> sha256 in its stream


@pytest.fixture(scope="module")
def mirror_key() -> Iterator[SigningKey]:
    """The key the mirrors sign with."""
    with (
        short_dir("bsm") as home,
        SigningKey.create(home / "g", name="mirror", email="m@test.invalid") as key,
    ):
        yield key


def _paths(stream: SampleStream, *, shas: bool = False) -> dict[str, str]:
    """ "product/version/item" → path (or path → sha256), of ``stream``'s items."""
    found = {}
    for doc in (stream.root / META).glob("*.json"):
        if doc.name == "index.json":
            continue
        try:
            products = parse_products(doc.read_bytes())
        except (StreamFormatError, RecursionError):
            continue
        for i in flatten(products):
            if i.path and shas:
                found[i.path] = i.sha256 or ""
            elif i.path:
                found[f"{i.product_name}/{i.version_name}/{i.item_name}"] = i.path
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def matrix(
    tmp_path_factory: pytest.TempPathFactory,
    upstream_key: SigningKey,
    region_key: SigningKey,
    mirror_key: SigningKey,
) -> AsyncIterator[Matrix]:
    """Every case against a region and a mirror, run at once."""
    work = tmp_path_factory.mktemp("hostile")
    base = await asyncio.to_thread(
        write_sample_stream,
        work / "base",
        file_size=FILE_SIZE,
        versions=1,
        signing_key=upstream_key,
    )
    streams: dict[str, SampleStream] = {}
    for n, (name, case) in enumerate(CASES.items()):
        streams[name] = await asyncio.to_thread(
            hostile_stream, base, work / f"up{n}", upstream_key, case
        )
    scenarios: dict[str, Callable[[], Awaitable[RegionRun | MirrorRun]]] = {}
    for n, name in enumerate(CASES):
        scenarios[f"region {name}"] = partial(
            region_run, work / f"region{n}", region_key, streams[name]
        )
        scenarios[f"mirror {name}"] = partial(
            mirror_run, work / f"mirror{n}", mirror_key, streams[name]
        )
    outcomes = await run_all(scenarios, at_once=8)
    yield Matrix(
        region={
            k.removeprefix("region "): v for k, v in outcomes.items() if k.startswith("region")
        },
        mirror={
            k.removeprefix("mirror "): v for k, v in outcomes.items() if k.startswith("mirror")
        },
        paths={name: await asyncio.to_thread(_paths, s) for name, s in streams.items()},
        shas={name: await asyncio.to_thread(_paths, s, shas=True) for name, s in streams.items()},
    )


def names(case: Case, text: str) -> bool:
    """Whether ``text`` names ``case``'s field and one of its reasons."""
    return case.where in text and any(word in text.lower() for word in case.why)


# --- the region ----------------------------------------------------------------------------


def _xfail_rest(part: str) -> list[Any]:
    """The ``name`` parameters of the cases, strict-xfailed where ``part`` lacks the rest."""
    return [
        pytest.param(
            name,
            marks=pytest.mark.xfail(strict=True, reason=case.rest_missing[part]),
        )
        if part in case.rest_missing
        else name
        for name, case in CASES.items()
    ]


@pytest.mark.parametrize("name", list(CASES))
async def test_the_region_refuses_a_hostile_item_by_name_and_api_and_stream_agree(
    matrix: Matrix, name: str
) -> None:
    """The bad item's version is refused and named; held and published agree; nothing corrupt."""
    case = CASES[name]
    outcome = matrix.region[name]
    run: RegionRun = outcome.result()
    assert not outcome.crashes(), outcome.crashes()
    assert not run.problems, run.problems
    assert run.published == run.held, "the API and the published stream disagree"
    assert run.first.outcome == run.second.outcome
    if "region" in case.refused_by or case.at_download:
        assert [s for s in run.said if names(case, s)], run.said
        assert case.bad_key not in run.held or case.content_id != V3


@pytest.mark.parametrize("name", _xfail_rest("region"))
async def test_the_region_imports_the_rest_of_a_hostile_stream(matrix: Matrix, name: str) -> None:
    """Every image the bad item does not belong to is imported and published."""
    case = CASES[name]
    run: RegionRun = matrix.region[name].result()
    assert run.first.published
    if case.content_id == V3:
        assert run.held.get(GRUB_KEY) == [BOOT_VERSION], run.held
        if case.scope == "version":
            assert run.held.get(case.good_key) == [VERSION], run.held
    else:
        assert run.held.get(GA_KEY) == run.held.get(HWE_KEY) == [VERSION], run.held


# --- the mirror ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
async def test_the_mirror_refuses_a_hostile_item_by_name_and_nothing_is_corrupt(
    matrix: Matrix, name: str
) -> None:
    """The bad item is refused or its run fails, named; no corrupt blob, no write in .bootsync/."""
    case = CASES[name]
    outcome = matrix.mirror[name]
    run: MirrorRun = outcome.result()
    assert not outcome.crashes(), outcome.crashes()
    assert not run.problems, run.problems
    assert run.state_ok, ".bootsync/state.json was overwritten"
    assert not any(p.startswith(STATE_DIR) for p in run.listed)
    if "mirror" in case.refused_by or case.at_download:
        said = [*(run.summary.refused if run.summary else ()), str(run.error or "")]
        assert [s for s in said if names(case, s)], said
        bad = _files(matrix, name, case.bad)
        assert not (bad - _files(matrix, name, _other(case.bad))) & run.listed


def _files(matrix: Matrix, name: str, product: str) -> set[str]:
    """The paths of ``product``'s items in case ``name``'s stream."""
    return {p for k, p in matrix.paths[name].items() if k.startswith(f"{product}/")}


def _other(product: str) -> str:
    return HWE if product == GA else GA


@pytest.mark.parametrize("name", _xfail_rest("mirror"))
async def test_the_mirror_mirrors_the_rest_of_a_hostile_stream(matrix: Matrix, name: str) -> None:
    """Every file the bad item does not belong to is mirrored (or, for a lie only the bytes
    show, fetched and kept in the store for the next run)."""
    case = CASES[name]
    run: MirrorRun = matrix.mirror[name].result()
    good = _files(matrix, name, _other(case.bad))
    grub = _files(matrix, name, GRUB)
    if case.at_download:
        assert isinstance(run.error, MirrorFailedError), run.error
        assert {matrix.shas[name][p] for p in good} <= run.blobs
        return
    assert run.error is None, run.error
    if case.content_id == V3:
        assert grub <= run.listed
        if case.scope == "version":
            assert good <= run.listed
    else:
        assert good | _files(matrix, name, GA) <= run.listed


# --- a rack's layout of what the region publishes -----------------------------------------


@pytest.mark.parametrize("name", list(CASES))
async def test_a_rack_never_lays_out_a_hostile_item_and_lays_out_the_rest(
    matrix: Matrix, name: str
) -> None:
    """What the region publishes is laid out whole, but for a version the rack cannot hold,
    left out with its reason named."""
    case = CASES[name]
    run: RegionRun = matrix.region[name].result()
    layout = run.layout
    left_out = {(lo.product, lo.version): lo.reason for lo in layout.left_out}
    laid_out = {(i.product_name, i.version_name) for i in layout.sources}
    if "rack" in case.refused_by and "region" not in case.refused_by:
        assert left_out, "the rack laid the bad version out"
        assert all(names(case, reason) for reason in left_out.values()), left_out
    else:
        assert not left_out, left_out
    assert laid_out == run.versions - set(left_out)
    assert not any(re.search(r"(^|/)\.", f.relpath) for f in layout.files)
