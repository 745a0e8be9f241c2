"""Throwaway OpenPGP keys for tests, made once per session with the gpg CLI.

The fakes sign with gpg directly (as upstream's publishing tools do), so the
code under test is checked against gpg itself and not against itself.
``tests/conftest.py`` loads this module as a plugin, so every test can ask for:

- ``gpg_signer``: the usual upstream signing key;
- ``gpg_keyring`` / ``gpg_keyring_path``: a keyring trusting only ``gpg_signer``;
- ``gpg_stranger``: a key nobody trusts;
- ``gpg_expired_signer``: a key that expired (it signs at a faked past time);
- ``gpg_subkey_signer``: a key whose primary only certifies and a subkey signs.

Sign with :func:`clearsign`; build other keyrings with :func:`keyring_for`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.trust.keyrings import Keyring, load_keyring, stop_agent
from tests.fixtures import UPSTREAM

REPO_ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_SAMPLES = UPSTREAM
# The binary keyring is the one the package ships; its armored export is a test fixture.
UBUNTU_KEYRING = REPO_ROOT / "common" / "data" / "ubuntu-cloudimage-keyring.gpg"
UBUNTU_KEYRING_ASC = UPSTREAM_SAMPLES / "keyrings" / "ubuntu-cloudimage-keyring.asc"
UBUNTU_FINGERPRINTS = (
    "D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81",
    "4A3CE3CD565D7EB5C810E2B97FF3F408476CF100",
)

_EXPIRED_CREATED_AT = "20200101T000000!"
_EXPIRED_SIGNS_AT = "20200101T120000!"


@dataclass(frozen=True)
class ThrowawayKey:
    """A test key in its own GNUPGHOME; ``faked_time`` is the clock it signs with, if any."""

    home: Path
    fingerprint: str
    faked_time: str | None = None

    @property
    def keyring(self) -> Keyring:
        """A keyring holding only this key."""
        return keyring_for(self)


def gpg(home: Path, *args: str, data: bytes = b"", faked_time: str | None = None) -> bytes:
    """Run gpg in batch mode against ``home`` and return its stdout; raise on failure."""
    clock = ["--faked-system-time", faked_time] if faked_time else []
    done = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--no-tty",
            "--quiet",
            "--yes",
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            *clock,
            *args,
        ],
        input=data,
        capture_output=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def make_key(
    home: Path,
    *,
    name: str,
    expire: str = "never",
    faked_time: str | None = None,
    signing_subkey: bool = False,
) -> ThrowawayKey:
    """Create an ed25519 key without passphrase in a new ``home``.

    With ``signing_subkey`` the primary key may only certify and a subkey signs.
    """
    home.mkdir(mode=0o700, parents=True)
    email = f"{name.lower().replace(' ', '-')}@example.invalid"
    usage = "cert" if signing_subkey else "sign"
    gpg(
        home,
        "--quick-gen-key",
        f"{name} <{email}>",
        "ed25519",
        usage,
        expire,
        faked_time=faked_time,
    )
    listing = gpg(home, "--list-keys", "--with-colons").decode()
    fingerprint = next(
        line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
    )
    if signing_subkey:
        gpg(home, "--quick-add-key", fingerprint, "ed25519", "sign", expire)
    return ThrowawayKey(home=home, fingerprint=fingerprint, faked_time=faked_time)


def clearsign(key: ThrowawayKey, data: bytes) -> bytes:
    """``gpg --clearsign`` of ``data`` by ``key`` (at its faked time, if it has one)."""
    return gpg(
        key.home,
        "--local-user",
        key.fingerprint,
        "--clearsign",
        data=data,
        faked_time=key.faked_time,
    )


def export_public(key: ThrowawayKey, *, armor: bool = False) -> bytes:
    """The public part of ``key``, binary or ASCII-armored."""
    return gpg(key.home, *(["--armor"] if armor else []), "--export", key.fingerprint)


def keyring_for(*keys: ThrowawayKey) -> Keyring:
    """A keyring trusting exactly ``keys`` (binary keyrings concatenate)."""
    return load_keyring(b"".join(export_public(key) for key in keys), name="test keyring")


def _session_key(
    home: Path,
    name: str,
    *,
    signing_subkey: bool = False,
) -> Iterator[ThrowawayKey]:
    key = make_key(home, name=name, signing_subkey=signing_subkey)
    yield key
    stop_agent(key.home)


@pytest.fixture(scope="session")
def gpg_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short session directory for key homes (agent socket paths must stay short)."""
    return tmp_path_factory.mktemp("gpg")


@pytest.fixture(scope="session")
def gpg_signer(gpg_keys_dir: Path) -> Iterator[ThrowawayKey]:
    """The upstream signing key of the test streams."""
    yield from _session_key(gpg_keys_dir / "signer", name="Bootsync Test Signer")


@pytest.fixture(scope="session")
def gpg_stranger(gpg_keys_dir: Path) -> Iterator[ThrowawayKey]:
    """A valid key that no test keyring trusts."""
    yield from _session_key(gpg_keys_dir / "stranger", name="Unknown Stranger")


@pytest.fixture(scope="session")
def gpg_expired_signer(gpg_keys_dir: Path) -> Iterator[ThrowawayKey]:
    """A key made on 2020-01-01 that expired a day later; it signs while still valid."""
    home = gpg_keys_dir / "expired"
    key = make_key(home, name="Expired Signer", expire="1d", faked_time=_EXPIRED_CREATED_AT)
    yield ThrowawayKey(home=key.home, fingerprint=key.fingerprint, faked_time=_EXPIRED_SIGNS_AT)
    stop_agent(home)


@pytest.fixture(scope="session")
def gpg_subkey_signer(gpg_keys_dir: Path) -> Iterator[ThrowawayKey]:
    """A key whose signatures are made by a signing subkey; ``fingerprint`` is the primary's."""
    yield from _session_key(gpg_keys_dir / "subkey", name="Subkey Signer", signing_subkey=True)


@pytest.fixture(scope="session")
def gpg_keyring(gpg_signer: ThrowawayKey) -> Keyring:
    """A keyring that trusts only ``gpg_signer``."""
    return gpg_signer.keyring


@pytest.fixture(scope="session")
def gpg_keyring_path(gpg_keys_dir: Path, gpg_signer: ThrowawayKey) -> Path:
    """``gpg_keyring`` as a binary keyring file, as a config file would name it."""
    path = gpg_keys_dir / "trusted.gpg"
    path.write_bytes(export_public(gpg_signer))
    return path
