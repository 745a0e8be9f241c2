"""The catalogue: what each source offers, read through the signature gate, kept per source."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from common.mirror.samplestream import SampleStream
from common.trust.keyrings import SigningKey
from region.db import catalogue as repo_catalogue
from region.db import sources as repo_sources
from region.db.catalogue import CatalogueEntry
from region.db.config import set_config
from tests.fakes.upstream import FakeUpstream
from tests.fakes.waiting import eventually
from tests.integration.region.import_harness import (
    V3,
    ImportEnv,
    drop_products,
    import_env,
    sample_stream,
)

Events = list[MutableMapping[str, Any]]


@pytest.fixture
async def env(tmp_path: Path, region_key: SigningKey) -> AsyncIterator[ImportEnv]:
    """The region's import machinery (database, catalogue) on a fresh directory."""
    async with import_env(tmp_path / "region", region_key) as env:
        yield env


@pytest.fixture
def stream(tmp_path: Path, upstream_key: SigningKey) -> SampleStream:
    """A fresh sample stream."""
    return sample_stream(tmp_path / "upstream", upstream_key)


@pytest.fixture
def upstream(fake_upstream: FakeUpstream, stream: SampleStream) -> FakeUpstream:
    """The fake upstream serving ``stream``."""
    fake_upstream.serve_directory(stream.root)
    return fake_upstream


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


async def test_a_refresh_stores_every_image_the_source_offers(
    env: ImportEnv,
    upstream: FakeUpstream,
    stream: SampleStream,
) -> None:
    """Ubuntu kernels, bootloaders and CentOS land in the catalogue with titles and EOL dates."""
    source = await env.add_source(upstream, stream)
    known_before = await repo_catalogue.has_catalogue(env.db, source.id)
    ((_src, outcome),) = await env.catalogue.refresh_all(reason="test")
    entries = await repo_catalogue.available(env.db, source.id)
    known_after = await repo_catalogue.has_catalogue(env.db, source.id)
    status = await repo_catalogue.get_status(env.db, source.id)
    assert not known_before
    assert known_after
    assert not isinstance(outcome, Exception)
    assert len(entries) == 10
    assert (
        CatalogueEntry(
            os="ubuntu",
            arch="arm64",
            subarch="ga-22.04",
            release="jammy",
            label="stable",
            kflavor="generic",
            release_codename="Jammy Jellyfish",
            release_title="22.04 LTS",
            support_eol="2027-04-21",
            title="Ubuntu 22.04 LTS",
        )
        in entries
    )
    assert (
        CatalogueEntry(
            os="grub-efi-signed",
            arch="amd64",
            subarch="generic",
            release="uefi",
            label="stable",
            kflavor="generic",
            bootloader_type="uefi",
        )
        in entries
    )
    assert any(e.title == "CentOS 8" for e in entries)
    assert status.last_error is None
    assert status.last_index_updated is not None


async def test_products_that_vanish_upstream_leave_the_catalogue(
    env: ImportEnv,
    upstream: FakeUpstream,
    stream: SampleStream,
    upstream_key: SigningKey,
    log_events: Events,
) -> None:
    """The second refresh deletes the rows of products no longer offered, and only those."""
    source = await env.add_source(upstream, stream)
    await env.catalogue.refresh_all()
    await asyncio.to_thread(
        drop_products, stream, upstream_key, V3, lambda p: p["release"] == "jammy"
    )
    await env.catalogue.refresh_all()
    entries = await repo_catalogue.available(env.db, source.id)
    refreshed = [e for e in log_events if e["event"] == "catalogue_refreshed"]
    assert [(e["added"], e["updated"], e["removed"]) for e in refreshed] == [(10, 0, 0), (0, 0, 2)]
    assert not any(e.release == "jammy" for e in entries)


async def test_an_unreachable_source_keeps_its_error_until_it_is_fixed(
    env: ImportEnv,
    upstream: FakeUpstream,
    stream: SampleStream,
    log_events: Events,
) -> None:
    """A refused connection is stored and logged per source; a good refresh clears it."""
    bad_url = closed_port_url()
    source = await repo_sources.create_source(
        env.db, url=bad_url, keyring_data=stream.keyring.read_bytes()
    )
    await env.catalogue.refresh_all()
    failed = await repo_catalogue.get_status(env.db, source.id)
    await repo_sources.update_source(env.db, source.id, url=upstream.url("/"))
    await env.catalogue.refresh_all()
    fixed = await repo_catalogue.get_status(env.db, source.id)
    assert failed.last_error is not None
    assert failed.last_error.startswith(f"Failed to import images from {bad_url}: ")
    assert failed.last_error_at is not None
    assert fixed.last_error is None
    assert [e["url"] for e in log_events if e["event"] == "catalogue_refresh_failed"] == [bad_url]


async def test_a_source_signed_by_another_key_is_refused_with_maas_wording(
    env: ImportEnv,
    upstream: FakeUpstream,
    gpg_keyring_path: Path,
) -> None:
    """An index signed by a key the source's keyring lacks is an error; nothing is catalogued."""
    source = await repo_sources.create_source(
        env.db, url=upstream.url("/"), keyring_filename=str(gpg_keyring_path)
    )
    await env.catalogue.refresh_all()
    status = await repo_catalogue.get_status(env.db, source.id)
    entries = await repo_catalogue.available(env.db, source.id)
    assert entries == []
    assert status.last_error is not None
    assert "not in the keyring" in status.last_error
    assert status.last_error.endswith("Verify network connectivity and try again.")


async def test_a_keyring_file_is_read_at_refresh_time(
    tmp_path: Path,
    env: ImportEnv,
    upstream: FakeUpstream,
    stream: SampleStream,
) -> None:
    """A source naming a keyring file works while the file exists and fails once it is gone."""
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(stream.keyring.read_bytes())
    source = await repo_sources.create_source(
        env.db, url=upstream.url("/"), keyring_filename=str(keyring)
    )
    await env.catalogue.refresh_all()
    good = await repo_catalogue.get_status(env.db, source.id)
    keyring.unlink()
    await env.catalogue.refresh_all()
    gone = await repo_catalogue.get_status(env.db, source.id)
    entries = await repo_catalogue.available(env.db, source.id)
    assert good.last_error is None
    assert gone.last_error is not None
    assert "cannot read keyring" in gone.last_error
    assert len(entries) == 10  # the last good catalogue stays


async def test_an_absent_ubuntu_keyring_path_is_read_from_the_shipped_keyring(
    env: ImportEnv, upstream: FakeUpstream
) -> None:
    """The snap's Ubuntu keyring path, absent here, verifies with bootsync's own Ubuntu keyring."""
    source = await repo_sources.create_source(
        env.db,
        url=upstream.url("/"),
        keyring_filename="/snap/maas/current/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg",
    )
    await env.catalogue.refresh_all()
    status = await repo_catalogue.get_status(env.db, source.id)
    # The sample stream is signed by a test key, which Ubuntu's keyring lacks.
    assert status.last_error is not None
    assert "cannot read keyring" not in status.last_error
    assert "not in the keyring" in status.last_error


async def test_an_explicit_index_json_url_is_read_unsigned_with_a_warning(
    env: ImportEnv,
    upstream: FakeUpstream,
    stream: SampleStream,
) -> None:
    """As in MAAS, a URL ending in index.json skips signatures; we say so in a warning."""
    source = await repo_sources.create_source(
        env.db,
        url=upstream.url("/streams/v1/index.json"),
        keyring_data=stream.keyring.read_bytes(),
    )
    await env.catalogue.refresh_all()
    status = await repo_catalogue.get_status(env.db, source.id)
    entries = await repo_catalogue.available(env.db, source.id)
    assert len(entries) == 10
    assert status.warnings == (
        "The index is not signed: nothing verifies what this source serves.",
    )


async def test_refresh_requests_made_together_coalesce_into_one_refresh(
    env: ImportEnv,
    upstream: FakeUpstream,
    stream: SampleStream,
    log_events: Events,
) -> None:
    """Three schedule_refresh calls in a row read the source once, in the background."""
    source = await env.add_source(upstream, stream)
    for reason in ("created", "updated", "proxy"):
        env.catalogue.schedule_refresh(reason=reason)

    async def refreshed() -> bool:
        return any(e["event"] == "catalogue_refreshed" for e in log_events)

    await eventually(refreshed)
    entries = await repo_catalogue.available(env.db, source.id)
    assert len(upstream.requests_for("/streams/v1/index.sjson")) == 1
    assert len(entries) == 10
    (event,) = [e for e in log_events if e["event"] == "catalogue_refreshed"]
    assert event["reason"] == "created,proxy,updated"


async def test_sources_are_read_through_the_configured_proxy(
    env: ImportEnv,
    upstream: FakeUpstream,
    stream: SampleStream,
) -> None:
    """With http_proxy set, a source on an unresolvable host is fetched via the proxy."""
    source = await repo_sources.create_source(
        env.db, url="http://images.invalid/", keyring_data=stream.keyring.read_bytes()
    )
    await set_config(env.db, "http_proxy", upstream.url("/"))
    await env.catalogue.refresh_all()
    status = await repo_catalogue.get_status(env.db, source.id)
    entries = await repo_catalogue.available(env.db, source.id)
    (request,) = upstream.requests_for("/streams/v1/index.sjson")
    assert status.last_error is None
    assert len(entries) == 10
    assert request.headers["Host"] == "images.invalid"
