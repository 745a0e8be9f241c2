"""A real region process with a real published stream, fronted by a FakeRegion, for rack tests.

A test module may set ``FILE_SIZE`` (bytes of each large sample file; default 64 KiB).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.mirror.samplestream import SampleStream, write_sample_stream
from common.trust.keyrings import SigningKey
from tests.fakes.daemons import DaemonProcess, free_port
from tests.fakes.region import FakeRegion
from tests.fakes.upstream import FakeUpstream

DEFAULT_FILE_SIZE = 64 << 10


@pytest.fixture(scope="module")
def sample_stream(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream_key: SigningKey,
) -> SampleStream:
    """A signed MAAS-shaped upstream stream, written once per module."""
    size = getattr(request.module, "FILE_SIZE", DEFAULT_FILE_SIZE)
    return write_sample_stream(
        tmp_path_factory.mktemp("upstream"), file_size=size, signing_key=upstream_key
    )


@pytest.fixture
async def region(
    fake_upstream: FakeUpstream, sample_stream: SampleStream, tmp_path: Path
) -> AsyncIterator[DaemonProcess]:
    """``bootsync-regiond`` after its start-up import: its stream is published."""
    fake_upstream.serve_directory(sample_stream.root)
    data_dir = Path(tempfile.mkdtemp(prefix="bsr", dir="/tmp"))
    config = tmp_path / "regiond.toml"
    config.write_text(
        f'[import]\ndefault_source_url = "{fake_upstream.url("/")}"\n'
        f'default_keyring = "{sample_stream.keyring}"\n[log]\nformat = "json"\n'
    )
    port = free_port()
    daemon = DaemonProcess(
        "region",
        ["--config", str(config), "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
        log_path=tmp_path / "regiond.log",
        port=port,
    )
    await daemon.start()
    try:
        summary = (await daemon.wait_for_event("import_finished"))[0]
        assert summary["outcome"] == "ok", summary
        yield daemon
    finally:
        await daemon.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def fake_region(region: DaemonProcess) -> AsyncIterator[FakeRegion]:
    """A FakeRegion speaking the rack protocol, its stream proxied to ``region``."""
    fake = FakeRegion(stream_origin=region.url)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
