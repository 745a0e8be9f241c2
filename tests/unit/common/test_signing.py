"""The signature gate, against real gpg with throwaway keys and the real Ubuntu keyring."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from blockbuster import BlockingError

from common.errors import (
    BadSignatureError,
    ExpiredKeyError,
    KeyringError,
    NoSignatureError,
    SignatureError,
    TamperedPayloadError,
    UnknownKeyError,
)
from common.trust.keyrings import Keyring, load_keyring
from common.trust.signing import VerifiedDocument, averify_clearsigned, verify_clearsigned
from tests.fakes.gpg import (
    UBUNTU_KEYRING,
    UPSTREAM_SAMPLES,
    ThrowawayKey,
    clearsign,
    export_public,
)

SOURCE = "http://127.0.0.1/streams/v1/index.sjson"
INDEX = (
    b'{\n "format": "index:1.0",\n "index": {\n  "com.example:v3:download": {\n'
    b'   "path": "streams/v1/com.example:v3:download.sjson"\n  }\n }\n}\n'
)


@pytest.fixture(scope="module")
def signed_index(gpg_signer: ThrowawayKey) -> bytes:
    """INDEX clearsigned by the trusted test signer."""
    return clearsign(gpg_signer, INDEX)


def _refused(
    exc_type: type[SignatureError], data: bytes, keyring: Keyring, allow_unsigned: bool = False
) -> SignatureError:
    """Verify ``data``, expect ``exc_type``, and check the message names the source."""
    with pytest.raises(exc_type) as caught:
        verify_clearsigned(data, keyring, source=SOURCE, allow_unsigned=allow_unsigned)
    assert str(caught.value).startswith(f"{SOURCE}: ")
    assert caught.value.source == SOURCE
    return caught.value


def _signature_lines(signed: bytes) -> tuple[list[bytes], int]:
    lines = signed.split(b"\n")
    return lines, lines.index(b"-----BEGIN PGP SIGNATURE-----")


# --- accepted ------------------------------------------------------------------------


def test_good_signature_yields_the_payload_and_the_signer_fingerprint(
    signed_index: bytes, gpg_keyring: Keyring, gpg_signer: ThrowawayKey
) -> None:
    """A document clearsigned by a trusted key verifies to its exact payload and signer."""
    assert verify_clearsigned(signed_index, gpg_keyring, source=SOURCE) == VerifiedDocument(
        payload=INDEX, fingerprint=gpg_signer.fingerprint, signed=True
    )


@pytest.mark.parametrize(
    ("armor", "as_file"),
    [(False, True), (True, True), (False, False), (True, False)],
    ids=["binary-path", "armored-path", "binary-bytes", "armored-bytes"],
)
def test_keyring_given_as_path_or_bytes_binary_or_armored_verifies(
    signed_index: bytes, gpg_signer: ThrowawayKey, tmp_path: Path, armor: bool, as_file: bool
) -> None:
    """The same public key loaded from any of the four forms verifies the document."""
    exported = export_public(gpg_signer, armor=armor)
    path = tmp_path / "trusted.key"
    path.write_bytes(exported)
    keyring = load_keyring(path if as_file else exported)
    assert verify_clearsigned(signed_index, keyring).fingerprint == gpg_signer.fingerprint


def test_subkey_signature_reports_the_primary_key_fingerprint(
    gpg_subkey_signer: ThrowawayKey,
) -> None:
    """A signature made by a signing subkey is attributed to its primary key."""
    verified = verify_clearsigned(clearsign(gpg_subkey_signer, INDEX), gpg_subkey_signer.keyring)
    assert verified.fingerprint == gpg_subkey_signer.fingerprint
    assert verified.payload == INDEX


def test_payload_is_gpg_output_with_dash_escaping_undone(
    gpg_signer: ThrowawayKey, gpg_keyring: Keyring
) -> None:
    """Lines that gpg dash-escapes in the signed text come back exactly as signed."""
    data = b"- a dash line\n-----BEGIN PGP SIGNATURE-----\n-----END PGP SIGNATURE-----\n"
    signed = clearsign(gpg_signer, data)
    assert b"\n- -----END PGP SIGNATURE-----\n" in signed
    assert verify_clearsigned(signed, gpg_keyring).payload == data


def test_blanks_added_to_signed_lines_do_not_reach_the_payload(
    signed_index: bytes, gpg_keyring: Keyring
) -> None:
    """Trailing spaces the signature ignores, added in transit, are not in the verified payload."""
    padded = signed_index.replace(b'"format": "index:1.0",\n', b'"format": "index:1.0",   \n')
    assert padded != signed_index
    assert verify_clearsigned(padded, gpg_keyring).payload == INDEX


def test_blank_lines_after_the_signature_block_are_accepted(
    signed_index: bytes, gpg_keyring: Keyring
) -> None:
    """Whitespace after the signature block is not stray text."""
    assert verify_clearsigned(signed_index + b"\n\n", gpg_keyring).payload == INDEX


# --- refused -------------------------------------------------------------------------


def test_payload_edited_after_signing_raises_tampered_payload_error(
    signed_index: bytes, gpg_keyring: Keyring
) -> None:
    """A change to the signed text makes the signature BAD: TamperedPayloadError."""
    tampered = signed_index.replace(b"index:1.0", b"index:9.0")
    assert tampered != signed_index
    _refused(TamperedPayloadError, tampered, gpg_keyring)


def test_allow_unsigned_does_not_excuse_a_bad_signature(
    signed_index: bytes, gpg_keyring: Keyring
) -> None:
    """A signed document is checked even when unsigned input is allowed."""
    _refused(
        TamperedPayloadError,
        signed_index.replace(b"index:1.0", b"index:9.0"),
        gpg_keyring,
        allow_unsigned=True,
    )


def _garble_packet(lines: list[bytes], at: int) -> None:
    lines[at + 2] = lines[at + 2][:10] + b"AAAA" + lines[at + 2][14:]


def _bad_checksum(lines: list[bytes], at: int) -> None:
    crc = next(i for i in range(at, len(lines)) if lines[i].startswith(b"="))
    lines[crc] = b"=AAAA" if lines[crc] != b"=AAAA" else b"=BBBB"


def _empty_body(lines: list[bytes], at: int) -> None:
    end = lines.index(b"-----END PGP SIGNATURE-----")
    del lines[at + 2 : end]


def _no_end_line(lines: list[bytes], at: int) -> None:
    lines.remove(b"-----END PGP SIGNATURE-----")


def _no_signature(lines: list[bytes], at: int) -> None:
    del lines[at:]


@pytest.mark.parametrize(
    "damage",
    [_garble_packet, _bad_checksum, _empty_body, _no_end_line, _no_signature],
    ids=["garbled-packet", "bad-checksum", "empty-body", "no-end-line", "no-signature"],
)
def test_damaged_signature_block_raises_bad_signature_error(
    signed_index: bytes, gpg_keyring: Keyring, damage: object
) -> None:
    """A signature block gpg cannot parse or check raises BadSignatureError."""
    lines, at = _signature_lines(signed_index)
    damage(lines, at)  # type: ignore[operator]
    _refused(BadSignatureError, b"\n".join(lines), gpg_keyring)


def test_signature_by_a_key_outside_the_keyring_raises_unknown_key_error(
    gpg_stranger: ThrowawayKey, gpg_keyring: Keyring
) -> None:
    """A good signature by an untrusted key raises UnknownKeyError naming that key."""
    error = _refused(UnknownKeyError, clearsign(gpg_stranger, INDEX), gpg_keyring)
    assert gpg_stranger.fingerprint in str(error)


def test_real_ubuntu_document_signed_outside_the_cloudimage_keyring_is_unknown() -> None:
    """Ubuntu's real SHA512SUMS, signed by key 568D30F321B2133D, is refused by the cloud keyring."""
    data = (
        UPSTREAM_SAMPLES / "keyrings" / "ubuntu-keyring_2018.09.18.1.SHA512SUMS.txt.asc"
    ).read_bytes()
    error = _refused(UnknownKeyError, data, load_keyring(UBUNTU_KEYRING))
    assert "568D30F321B2133D" in str(error)


def test_signer_missing_from_the_keyring_fingerprints_is_unknown(
    signed_index: bytes, gpg_keyring: Keyring, gpg_stranger: ThrowawayKey
) -> None:
    """Only the keyring's listed primary fingerprints are trusted, whatever its binary holds."""
    narrowed = Keyring(binary=gpg_keyring.binary, fingerprints=(gpg_stranger.fingerprint,))
    _refused(UnknownKeyError, signed_index, narrowed)


def test_signature_by_an_expired_key_raises_expired_key_error(
    gpg_expired_signer: ThrowawayKey,
) -> None:
    """A signature made while the key was valid is refused once the key has expired."""
    _refused(ExpiredKeyError, clearsign(gpg_expired_signer, INDEX), gpg_expired_signer.keyring)


def test_empty_keyring_raises_keyring_error(signed_index: bytes) -> None:
    """A keyring with no keys cannot verify anything: KeyringError."""
    _refused(KeyringError, signed_index, Keyring(binary=b"", fingerprints=()))


def test_unsigned_document_is_refused_by_default(gpg_keyring: Keyring) -> None:
    """Plain JSON without a clearsign header raises NoSignatureError."""
    _refused(NoSignatureError, INDEX, gpg_keyring)


def test_unsigned_document_is_returned_as_is_when_allowed(gpg_keyring: Keyring) -> None:
    """With allow_unsigned, plain data comes back unchanged, unsigned and without signer."""
    assert verify_clearsigned(INDEX, gpg_keyring, allow_unsigned=True) == VerifiedDocument(
        payload=INDEX, fingerprint=None, signed=False
    )


@pytest.mark.parametrize("allow_unsigned", [False, True], ids=["strict", "unsigned-allowed"])
@pytest.mark.parametrize(
    "wrap",
    [
        lambda signed, other: signed + b'{"evil": true}\n',
        lambda signed, other: b'{"evil": true}\n' + signed,
        lambda signed, other: signed + other,
        lambda signed, other: (
            b'-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{"evil": true}\n' + signed
        ),
        lambda signed, other: "\ufeff".encode() + signed,
    ],
    ids=[
        "text-appended",
        "text-prepended",
        "second-message-appended",
        "fake-header-prepended",
        "bom-prepended",
    ],
)
def test_text_outside_the_one_signed_block_is_refused(
    signed_index: bytes,
    gpg_signer: ThrowawayKey,
    gpg_keyring: Keyring,
    allow_unsigned: bool,
    wrap: object,
) -> None:
    """Unsigned text around a valid signed block never reaches a payload: BadSignatureError."""
    other = clearsign(gpg_signer, b'{"evil": true}\n')
    data = wrap(signed_index, other)  # type: ignore[operator]
    error = _refused(BadSignatureError, data, gpg_keyring, allow_unsigned=allow_unsigned)
    assert "evil" not in str(error)


# --- isolation and the event loop ----------------------------------------------------


def test_verification_never_touches_the_users_gnupg_home(
    signed_index: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HOME and GNUPGHOME set to an empty directory, load and verify leave it empty."""
    user_home = tmp_path / "user"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.setenv("GNUPGHOME", str(user_home / ".gnupg"))
    keyring = load_keyring(UBUNTU_KEYRING)
    _refused(UnknownKeyError, signed_index, keyring)
    assert list(user_home.iterdir()) == []


async def test_async_verify_leaves_the_event_loop_free(
    signed_index: bytes, gpg_keyring: Keyring
) -> None:
    """averify_clearsigned runs gpg in a thread: other tasks keep running meanwhile."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    verified = await averify_clearsigned(signed_index, gpg_keyring, source=SOURCE)
    done.set()
    await task
    assert verified.payload == INDEX
    assert ticks > 1


async def test_sync_verify_on_the_event_loop_is_caught(
    signed_index: bytes, gpg_keyring: Keyring
) -> None:
    """The blocking variant called inside a coroutine trips the blockbuster guard."""
    with pytest.raises(BlockingError):
        verify_clearsigned(signed_index, gpg_keyring, source=SOURCE)
    await asyncio.sleep(0)
