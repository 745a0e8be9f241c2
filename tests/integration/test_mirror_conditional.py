"""A second `bootsync mirror` run against an unchanged upstream asks with ETags and gets 304s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.mirror.sync import MirrorOptions, plan_mirror, run_mirror
from common.trust.keyrings import SigningKey, aload_keyring
from simplestreams import ItemFilter
from tests.fakes.upstream import FakeUpstream

NO_CHANGE_BUDGET = 5 << 10  # bytes an hourly run with nothing new may cost in all
NOBLE_AMD64 = (ItemFilter.parse("release=noble"), ItemFilter.parse("arch=amd64"))


@pytest.fixture
def stream(tmp_path: Path) -> SampleStream:
    """A small signed sample stream."""
    return write_sample_stream(tmp_path / "upstream", file_size=16 << 10)


@pytest.fixture
def signing_key(tmp_path: Path) -> Iterator[SigningKey]:
    """The mirror's own metadata key (its gpg-agent stopped after the test)."""
    with SigningKey.create(tmp_path / "gnupg", name="m", email="m@test.invalid") as key:
        yield key


async def _options(
    upstream: FakeUpstream, stream: SampleStream, target: Path, key: SigningKey | None
) -> MirrorOptions:
    return MirrorOptions(
        source_url=upstream.url("/"),
        target=target,
        keyring=await aload_keyring(stream.keyring),
        signing_key=key,
        filters=NOBLE_AMD64,
        show_progress=False,
        keep_upstream_metadata=key is None,
    )


def _tree(target: Path) -> dict[str, int]:
    return {
        str(p.relative_to(target)): p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize("own_metadata", [True, False], ids=["own-metadata", "upstream-metadata"])
async def test_a_second_run_with_nothing_new_transfers_under_5_kib_and_changes_nothing(
    fake_upstream: FakeUpstream,
    stream: SampleStream,
    signing_key: SigningKey,
    tmp_path: Path,
    own_metadata: bool,
) -> None:
    """Every metadata GET of the second run is conditional and answered 304; no file is touched."""
    fake_upstream.serve_directory(stream.root)
    target = tmp_path / "m"
    key = signing_key if own_metadata else None
    first = await run_mirror(await _options(fake_upstream, stream, target, key))
    assert first.files_fetched > 0
    before, requests_before = _tree(target), len(fake_upstream.requests)
    sent_before = fake_upstream.transferred_bytes()
    second = await run_mirror(await _options(fake_upstream, stream, target, key))
    transferred = fake_upstream.transferred_bytes() - sent_before
    requests = fake_upstream.requests[requests_before:]
    assert transferred <= NO_CHANGE_BUDGET, f"{transferred} bytes for a run with nothing new"
    assert requests, "the upstream was asked"
    assert all("If-None-Match" in r.headers for r in requests)
    assert (second.files_fetched, second.metadata_changed) == (0, False)
    assert _tree(target) == before


async def test_a_dry_run_reads_the_kept_documents_and_writes_no_state(
    fake_upstream: FakeUpstream, stream: SampleStream, tmp_path: Path
) -> None:
    """A dry run before any real run keeps nothing; after one, it is answered with 304s too."""
    fake_upstream.serve_directory(stream.root)
    target = tmp_path / "m"
    plan = await plan_mirror(await _options(fake_upstream, stream, target, None))
    assert plan.to_fetch
    assert not (target / ".bootsync" / "http-cache").exists()
    await run_mirror(await _options(fake_upstream, stream, target, None))
    sent = fake_upstream.served_bytes()
    await plan_mirror(await _options(fake_upstream, stream, target, None))
    assert fake_upstream.served_bytes() == sent
