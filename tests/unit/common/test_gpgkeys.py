"""Keyring loading and the local signing key, against the real gpg."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import KeyringError
from common.trust.keyrings import (
    MAX_SIGNED_LINE,
    SigningKey,
    aload_keyring,
    load_keyring,
    stop_agent,
)
from common.trust.signing import verify_clearsigned
from tests.fakes.gpg import (
    UBUNTU_FINGERPRINTS,
    UBUNTU_KEYRING,
    UBUNTU_KEYRING_ASC,
    UPSTREAM_SAMPLES,
    ThrowawayKey,
    export_public,
)


@pytest.fixture(scope="module")
def region_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    """One signing key created by our own code, shared by this module's tests."""
    with SigningKey.create(
        tmp_path_factory.mktemp("region") / "gnupg",
        name="Bootsync Region",
        email="region@example.invalid",
    ) as key:
        yield key


# --- load_keyring --------------------------------------------------------------------


def test_ubuntu_cloudimage_keyring_loads_its_two_primary_fingerprints() -> None:
    """The real binary Ubuntu cloud-image keyring yields exactly its two primary keys."""
    keyring = load_keyring(UBUNTU_KEYRING)
    assert keyring.fingerprints == UBUNTU_FINGERPRINTS
    assert keyring.binary[:1] != b"-"


def test_armored_ubuntu_keyring_loads_to_the_same_keys_in_binary_form() -> None:
    """The armored copy gives the same fingerprints and the same dearmored binary keyring."""
    armored = load_keyring(UBUNTU_KEYRING_ASC)
    assert armored.fingerprints == UBUNTU_FINGERPRINTS
    assert armored.binary == load_keyring(UBUNTU_KEYRING).binary


@pytest.mark.parametrize("path", [UBUNTU_KEYRING, UBUNTU_KEYRING_ASC], ids=["binary", "armored"])
def test_keyring_loads_from_raw_bytes_as_from_the_file(path: Path) -> None:
    """Bytes, binary or armored, load to the same keyring as the file they came from."""
    assert load_keyring(path.read_bytes()) == load_keyring(path)


def test_single_armored_key_loads_only_that_key() -> None:
    """An armored export of one key yields just that key's fingerprint."""
    single = UPSTREAM_SAMPLES / "keyrings" / "uec-image-automatic-signing-key-7DB87C81.asc"
    keyring = load_keyring(single)
    assert keyring.fingerprints == (UBUNTU_FINGERPRINTS[0],)


def test_loaded_binary_keyring_loads_again_unchanged() -> None:
    """A keyring's binary form is itself a loadable keyring with the same keys."""
    keyring = load_keyring(UBUNTU_KEYRING_ASC)
    assert load_keyring(keyring.binary) == keyring


def test_concatenated_throwaway_keys_load_as_one_keyring(
    gpg_signer: ThrowawayKey, gpg_stranger: ThrowawayKey
) -> None:
    """Two binary exports joined together load as a keyring with both primary keys."""
    keyring = load_keyring(export_public(gpg_signer) + export_public(gpg_stranger))
    assert set(keyring.fingerprints) == {gpg_signer.fingerprint, gpg_stranger.fingerprint}


def test_missing_keyring_file_raises_keyring_error_naming_the_path(tmp_path: Path) -> None:
    """A keyring path that does not exist raises KeyringError with the path in the message."""
    missing = tmp_path / "nowhere.gpg"
    with pytest.raises(KeyringError, match=r"nowhere\.gpg") as caught:
        load_keyring(missing)
    assert caught.value.source == str(missing)


def test_unreadable_keyring_path_raises_keyring_error(tmp_path: Path) -> None:
    """A directory given as keyring path raises KeyringError naming it."""
    with pytest.raises(KeyringError, match=str(tmp_path)):
        load_keyring(tmp_path)


@pytest.mark.parametrize("content", [b"", b" \n\n"], ids=["empty", "blank"])
def test_empty_keyring_file_raises_keyring_error(tmp_path: Path, content: bytes) -> None:
    """An empty or blank keyring file raises KeyringError that names the file."""
    path = tmp_path / "empty.gpg"
    path.write_bytes(content)
    with pytest.raises(KeyringError, match=r"empty\.gpg: keyring is empty"):
        load_keyring(path)


@pytest.mark.parametrize(
    "content",
    [
        b'{"format": "products:1.0"}\n',
        (
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 at all\n"
            b"-----END PGP PUBLIC KEY BLOCK-----\n"
        ),
        bytes(range(256)),
    ],
    ids=["json", "broken-armor", "binary-noise"],
)
def test_data_without_a_public_key_raises_keyring_error(content: bytes) -> None:
    """Bytes that hold no OpenPGP public key raise KeyringError naming the given name."""
    with pytest.raises(KeyringError, match=r"^upstream keyring: holds no usable public key$"):
        load_keyring(content, name="upstream keyring")


async def test_async_load_keyring_runs_off_the_event_loop() -> None:
    """aload_keyring loads the real keyring from a coroutine without blocking calls on the loop."""
    keyring = await aload_keyring(UBUNTU_KEYRING)
    assert keyring.fingerprints == UBUNTU_FINGERPRINTS


# --- SigningKey ----------------------------------------------------------------------


def test_created_key_lives_in_a_private_home_and_reopens(region_key: SigningKey) -> None:
    """create makes a 0700 home with one key whose fingerprint open() finds again."""
    assert stat.S_IMODE(region_key.home.stat().st_mode) == 0o700
    assert len(region_key.fingerprint) == 40
    assert region_key.fingerprint == region_key.fingerprint.upper()
    assert SigningKey.open(region_key.home) == region_key


def test_open_or_create_reuses_the_existing_key(region_key: SigningKey) -> None:
    """open_or_create on a home that holds a key returns that key rather than making another."""
    again = SigningKey.open_or_create(region_key.home, name="Other", email="other@example.invalid")
    assert again == region_key


def test_create_refuses_a_home_that_already_holds_a_key(region_key: SigningKey) -> None:
    """create on a home with a secret key raises KeyringError instead of adding a second key."""
    with pytest.raises(KeyringError, match="already holds a secret key"):
        SigningKey.create(region_key.home, name="Second", email="second@example.invalid")


def test_open_without_a_secret_key_raises_keyring_error(tmp_path: Path) -> None:
    """open raises KeyringError for a missing home and for a home without a secret key."""
    with pytest.raises(KeyringError, match="does not exist"):
        SigningKey.open(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    try:
        with pytest.raises(KeyringError, match="found 0"):
            SigningKey.open(empty)
    finally:
        stop_agent(empty)


def test_open_or_create_creates_a_key_in_a_new_home(tmp_path: Path) -> None:
    """open_or_create on a fresh path generates a key there that open() then finds."""
    with SigningKey.open_or_create(
        tmp_path / "k", name="Fresh Key", email="fresh@example.invalid"
    ) as key:
        assert SigningKey.open(tmp_path / "k").fingerprint == key.fingerprint


@pytest.mark.parametrize(("field", "value"), [("name", "Evil\nKey-Type: RSA"), ("email", "")])
def test_create_rejects_values_that_would_break_gpg_batch_input(
    tmp_path: Path, field: str, value: str
) -> None:
    """A name with a newline or an empty email raises ValueError before gpg runs."""
    args = {"name": "Good Name", "email": "good@example.invalid", field: value}
    with pytest.raises(ValueError, match=field):
        SigningKey.create(tmp_path / "k", **args)


def test_a_home_too_long_for_the_agent_socket_is_used_through_a_short_alias(tmp_path: Path) -> None:
    """A deep home still signs: gpg runs through a short symlink to it, and the key lives there."""
    home = tmp_path / ("x" * 100)
    with SigningKey.create(home, name="Long Home", email="long@example.invalid") as key:
        assert key.home != home
        assert key.home.resolve() == home.resolve()
        signed = key.clearsign(b"payload\n")
        assert b"BEGIN PGP SIGNATURE" in signed
        assert list(home.glob("pubring.kbx"))
    with SigningKey.open(home) as reopened:
        assert reopened.fingerprint == key.fingerprint


def test_an_alias_pointing_elsewhere_is_refused(tmp_path: Path) -> None:
    """A pre-existing alias that points at another directory is never trusted."""
    home = tmp_path / ("y" * 100)
    home.mkdir(mode=0o700)
    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
    alias = Path(tempfile.gettempdir()) / f"bootsync-gpg-{digest}"
    alias.unlink(missing_ok=True)
    alias.symlink_to(tmp_path)
    try:
        with pytest.raises(KeyringError, match="too long"):
            SigningKey.create(home, name="Long Home", email="long@example.invalid")
    finally:
        alias.unlink()


@pytest.mark.parametrize(
    "data",
    [
        b'{"format": "index:1.0", "index": {}}\n',
        b"line one\r\nline two\r\n",
        b"ends with blank lines\n\n\n",
        b"- dash line\n-----BEGIN PGP SIGNATURE-----\nFrom the start\n",
        "non-ASCII: \u00e9t\u00e9 \u2713\n".encode(),
        b"x" * MAX_SIGNED_LINE + b"\n",
    ],
    ids=["json", "crlf", "blank-lines", "armor-lookalikes", "utf8", "longest-line"],
)
def test_clearsigned_output_verifies_to_the_exact_input_bytes(
    region_key: SigningKey, data: bytes
) -> None:
    """What clearsign returns verifies, against the exported public key, to byte-identical data."""
    keyring = load_keyring(region_key.export_public())
    verified = verify_clearsigned(region_key.clearsign(data), keyring, source="ours")
    assert verified.payload == data
    assert verified.fingerprint == region_key.fingerprint


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"a": 1}', "must end with a newline"),
        (b"", "must end with a newline"),
        (b'{"a": 1} \n', "line 1 ends in spaces or tabs"),
        (b'{\n"a": 1}\t\r\n', "line 2 ends in spaces or tabs"),
        (b"x" * (MAX_SIGNED_LINE + 1) + b"\n", "line 1 is longer than"),
    ],
    ids=["no-final-newline", "empty", "trailing-space", "trailing-tab-crlf", "long-line"],
)
def test_clearsign_refuses_bytes_it_could_not_give_back_verbatim(
    region_key: SigningKey, data: bytes, reason: str
) -> None:
    """Data whose verified payload would differ from it raises ValueError saying why."""
    with pytest.raises(ValueError, match=reason):
        region_key.clearsign(data)


def test_exported_public_key_loads_as_binary_and_armored(region_key: SigningKey) -> None:
    """Both export forms load to a keyring holding exactly the signing key."""
    armored = region_key.export_public(armor=True)
    assert armored.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    for exported in (armored, region_key.export_public()):
        assert load_keyring(exported).fingerprints == (region_key.fingerprint,)


async def test_async_signing_helpers_run_off_the_event_loop(region_key: SigningKey) -> None:
    """aopen_or_create, aclearsign and aexport_public work from a coroutine under blockbuster."""
    key = await SigningKey.aopen_or_create(
        region_key.home, name="Unused", email="unused@example.invalid"
    )
    signed = await key.aclearsign(b"payload\n")
    public = await key.aexport_public()
    assert signed.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----\n")
    assert public[:1] != b"-"


def test_close_stops_the_agent_that_signing_started(tmp_path: Path) -> None:
    """After close(), the gpg-agent socket that signing created in the home is gone."""
    key = SigningKey.create(tmp_path / "k", name="Short Lived", email="short@example.invalid")
    key.clearsign(b"x\n")
    assert (key.home / "S.gpg-agent").exists()
    key.close()
    assert not (key.home / "S.gpg-agent").exists()
