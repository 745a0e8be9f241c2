"""Fixtures every integration area shares: a data directory, sample streams, a region process.

A test module may set ``FILE_SIZE`` (bytes of each large sample file; default 64 KiB)
and ``VERSIONS`` (versions of each product; default 2) for its ``stream`` and
``newer_stream``. ``region`` is a real ``bootsync-regiond`` whose default source is
``stream``; an area or module that needs another region defines its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import pytest

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.trust.keyrings import SigningKey
from tests.fakes.daemons import DaemonProcess, region_daemon
from tests.fakes.streams import short_dir
from tests.fakes.upstream import FakeUpstream

DEFAULT_FILE_SIZE = 64 << 10
DEFAULT_VERSIONS = 2
NEWER = date(2025, 8, 15)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh short data directory under /tmp: a daemon's gpg-agent socket lives in it."""
    with short_dir("bsd") as path:
        yield path


def _module_stream(
    request: pytest.FixtureRequest, root: Path, key: SigningKey, **newest: date
) -> SampleStream:
    return write_sample_stream(
        root,
        file_size=getattr(request.module, "FILE_SIZE", DEFAULT_FILE_SIZE),
        versions=getattr(request.module, "VERSIONS", DEFAULT_VERSIONS),
        signing_key=key,
        **newest,
    )


@pytest.fixture(scope="module")
def stream(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream_key: SigningKey,
) -> SampleStream:
    """A signed MAAS-shaped upstream stream, written once per module."""
    return _module_stream(request, tmp_path_factory.mktemp("upstream"), upstream_key)


@pytest.fixture(scope="module")
def newer_stream(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream_key: SigningKey,
) -> SampleStream:
    """The same stream a month later (a new version of every product), signed by the same key."""
    return _module_stream(
        request, tmp_path_factory.mktemp("upstream-newer"), upstream_key, newest=NEWER
    )


@pytest.fixture
async def region(
    fake_upstream: FakeUpstream, stream: SampleStream, data_dir: Path, tmp_path: Path
) -> AsyncIterator[DaemonProcess]:
    """``bootsync-regiond`` started on 127.0.0.1, importing ``stream`` from the fake upstream."""
    fake_upstream.serve_directory(stream.root)
    daemon = region_daemon(tmp_path, data_dir, upstream=fake_upstream, stream=stream)
    await daemon.start()
    yield daemon
    await daemon.stop()
