"""`bootsync mirror` against a dripping upstream: it ends, naming the slow file or document.

The minimum rate is 64 KiB/s over half a second (``--min-rate 65536
--rate-window 0.5`` on the command line), so a server sending a few hundred
bytes every 50 ms fails within about a second. No test asserts how long
anything took: a hang would be caught by the pytest timeout.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import BootsyncError
from common.mirror.samplestream import SampleStream, write_sample_stream
from common.mirror.sync import MirrorFailedError, MirrorOptions, run_mirror
from common.transfer.limits import TransferLimits
from common.trust.keyrings import SigningKey, aload_keyring
from simplestreams import ItemFilter
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
QUICK = TransferLimits(min_rate=64 << 10, rate_window_s=0.5)
NOBLE_AMD64 = (ItemFilter.parse("arch=amd64"), ItemFilter.parse("release=noble"))
KERNEL = "noble/amd64/20250718/ga-24.04/generic/boot-kernel"
INDEX = "streams/v1/index.sjson"


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> SampleStream:
    """A signed sample stream with 32 KiB files."""
    return write_sample_stream(tmp_path_factory.mktemp("upstream"), file_size=32 << 10)


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    """The mirror's own signing key."""
    key = SigningKey.create(
        tmp_path_factory.mktemp("k") / "gnupg", name="test mirror", email="mirror@test.invalid"
    )
    with key:
        yield key


@pytest.fixture
def upstream(fake_upstream: FakeUpstream, stream: SampleStream) -> FakeUpstream:
    """The fake upstream serving the sample stream (at full speed until told)."""
    fake_upstream.serve_directory(stream.root)
    return fake_upstream


async def options(
    upstream: FakeUpstream, stream: SampleStream, target: Path, key: SigningKey
) -> MirrorOptions:
    """Mirror noble/amd64 into ``target`` under the quick limits."""
    return MirrorOptions(
        source_url=upstream.url("/"),
        target=target,
        keyring=await aload_keyring(stream.keyring),
        signing_key=key,
        filters=NOBLE_AMD64,
        show_progress=False,
        transfer=QUICK,
    )


async def test_a_dripping_file_fails_the_mirror_run_as_too_slow(
    upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """One file dripped out fails as too slow; the run ends, names it and publishes nothing."""
    upstream.drip(KERNEL, nbytes=256, every_s=0.05)
    with pytest.raises(MirrorFailedError, match="too slow") as failed:
        await run_mirror(await options(upstream, stream, tmp_path / "m", signing_key))
    assert failed.value.summary.files_failed == 1
    assert any(KERNEL in f and "too slow" in f for f in failed.value.summary.failures)
    assert not (tmp_path / "m" / KERNEL).exists()


async def test_a_dripping_index_ends_the_mirror_run_as_too_slow(
    upstream: FakeUpstream, stream: SampleStream, signing_key: SigningKey, tmp_path: Path
) -> None:
    """An index dripped out ends the run with the too-slow error, after one request."""
    upstream.drip(INDEX, nbytes=16, every_s=0.05)
    with pytest.raises(BootsyncError, match="too slow"):
        await run_mirror(await options(upstream, stream, tmp_path / "m", signing_key))
    assert len(upstream.requests_for(INDEX)) == 1


@pytest.fixture
def xdg() -> Iterator[Path]:
    """A short XDG_DATA_HOME: gpg-agent's socket path must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bsx", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def run_cli(*args: str, xdg: Path) -> tuple[int, str]:
    """Run ``bootsync ARGS`` in a subprocess; its exit code and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.cli",
        *args,
        env={**os.environ, "XDG_DATA_HOME": str(xdg), "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.parametrize("dripping", [KERNEL, INDEX])
async def test_cli_min_rate_and_rate_window_end_a_dripping_run_with_exit_1(
    upstream: FakeUpstream, stream: SampleStream, tmp_path: Path, xdg: Path, dripping: str
) -> None:
    """`--min-rate 65536 --rate-window 0.5` make a dripping file or index fail, named, no traceback."""
    upstream.drip(dripping, nbytes=64, every_s=0.05)
    code, err = await run_cli(
        "mirror",
        upstream.url("/"),
        str(tmp_path / "m"),
        "--keyring",
        str(stream.keyring),
        "--no-progress",
        "--min-rate",
        "65536",
        "--rate-window",
        "0.5",
        "arch=amd64",
        "release=noble",
        xdg=xdg,
    )
    assert code == 1, err
    assert "too slow" in err
    assert dripping in err
    assert "Traceback" not in err


async def test_cli_refuses_a_negative_rate_and_an_empty_window(
    stream: SampleStream, tmp_path: Path, xdg: Path
) -> None:
    """A usage error (exit 2) names the flag given a negative rate or a zero window."""
    for flag, value in (("--min-rate", "-1"), ("--rate-window", "0")):
        code, err = await run_cli(
            "mirror",
            "http://127.0.0.1:9/",
            str(tmp_path / "m"),
            "--keyring",
            str(stream.keyring),
            flag,
            value,
            xdg=xdg,
        )
        assert code == 2, err
        assert flag in err
