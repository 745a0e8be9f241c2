"""OpenPGP keyrings and the local signing key, handled by gpg in private homes.

Every gpg call gets its own ``--homedir``: a throwaway one (mode 0700, deleted
afterwards) for loading keyrings and verifying, or the signing key's own
directory. The user's ``~/.gnupg`` and ``$GNUPGHOME`` are never read or written.
All functions here block; the ``a*`` variants run them in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import gnupg

from common.errors import KeyringError
from common.ops.logging import get_logger
from common.storage.atomic import write_atomic
from common.storage.modes import PRIVATE_DIR_MODE, tighten_dir

log = get_logger(__name__)

GPG = "gpg"
GPGCONF = "gpgconf"

# python-gnupg warns through stdlib logging on every non-zero gpg exit; a refused
# signature is an outcome we raise and log ourselves, not a library warning.
logging.getLogger("gnupg").setLevel(logging.ERROR)

# The keyring handed to us is the only trust anchor, so gpg's web of trust is off,
# and nothing may reach out for keys.
_COMMON_OPTIONS = ["--no-auto-key-retrieve", "--trust-model", "always"]
# A Unix socket path must fit in sun_path (108 bytes with its NUL).
_SOCKET_PATH_MAX = 107
# gpg breaks clearsigned input lines longer than about 19995 bytes; keep a margin.
MAX_SIGNED_LINE = 19_000
_BATCH_VALUE = re.compile(r"[^\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Keyring:
    """Trusted public keys: a binary OpenPGP keyring and its primary fingerprints (upper hex)."""

    binary: bytes
    fingerprints: tuple[str, ...]


@contextlib.contextmanager
def throwaway_home() -> Iterator[Path]:
    """Yield a fresh, empty GNUPGHOME (0700) that is removed afterwards.

    Pair it with :func:`gpg_for` (offline): gpg then runs with ``--no-autostart``,
    so no agent can be left behind in it.
    """
    with tempfile.TemporaryDirectory(prefix="bootsync-gpg-", ignore_cleanup_errors=True) as name:
        home = Path(name)
        home.chmod(0o700)
        yield home


def gpg_for(home: Path, *, keyring: Path | None = None, offline: bool = True) -> Any:
    """A python-gnupg handle bound to ``home`` (and only ``keyring``, if given).

    ``offline`` forbids starting gpg-agent/dirmngr; secret-key work needs ``False``.
    """
    options = ["--no-autostart", *_COMMON_OPTIONS] if offline else list(_COMMON_OPTIONS)
    return gnupg.GPG(
        gpgbinary=GPG,
        gnupghome=str(home),
        keyring=str(keyring) if keyring is not None else None,
        options=options,
    )


def status_lines(result: Any) -> list[tuple[str, list[str]]]:
    """The ``[GNUPG:]`` status lines of a python-gnupg result, as (keyword, args)."""
    found: list[tuple[str, list[str]]] = []
    for line in (result.stderr or "").splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, *args = line[9:].split()
            found.append((keyword, args))
    return found


def load_keyring(source: Path | bytes, *, name: str = "") -> Keyring:
    """Load a binary or ASCII-armored keyring from a file or from bytes.

    The keys are imported into a throwaway home and exported again in binary form.
    Raises KeyringError (naming ``name`` or the path) when the file is missing or
    unreadable, the data is empty, or it holds no usable public key.
    """
    label = name or (str(source) if isinstance(source, Path) else "keyring data")
    if isinstance(source, Path):
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise KeyringError(f"cannot read keyring: {exc.strerror or exc}", source=label) from exc
    else:
        data = source
    if not data.strip():
        raise KeyringError("keyring is empty", source=label)
    with throwaway_home() as home:
        gpg = gpg_for(home)
        gpg.import_keys(data)
        fingerprints = tuple(key["fingerprint"].upper() for key in gpg.list_keys())
        if not fingerprints:
            raise KeyringError("holds no usable public key", source=label)
        binary = bytes(gpg.export_keys(list(fingerprints), armor=False))
    log.info("keyring_loaded", source=label, keys=len(fingerprints))
    return Keyring(binary=binary, fingerprints=fingerprints)


async def aload_keyring(source: Path | bytes, *, name: str = "") -> Keyring:
    """:func:`load_keyring` in a worker thread."""
    return await asyncio.to_thread(load_keyring, source, name=name)


def stop_agent(home: Path) -> None:
    """Stop any gpg-agent (and dirmngr) serving ``home``; harmless when none runs."""
    subprocess.run(
        [GPGCONF, "--homedir", str(home), "--kill", "all"],
        capture_output=True,
        check=False,
        timeout=30,
    )


def _socket_paths_fit(home: Path) -> bool:
    listing = subprocess.run(
        [GPGCONF, "--homedir", str(home), "--list-dirs"],
        capture_output=True,
        check=False,
        timeout=30,
        text=True,
    )
    for line in listing.stdout.splitlines():
        key, _, value = line.partition(":")
        path = re.sub(r"%([0-9a-fA-F]{2})", lambda m: chr(int(m[1], 16)), value)
        if key.startswith("agent") and len(os.fsencode(path)) > _SOCKET_PATH_MAX:
            return False
    return True


def usable_home(home: Path) -> Path:
    """``home``, or a short alias of it when gpg-agent's sockets would not fit there.

    A Unix socket path holds at most 107 bytes, and gpg-agent puts its sockets in
    the home. For a deep home (a data directory several levels down) the alias is
    a symlink ``<tmp>/bootsync-gpg-<digest>`` to it; an existing alias is used only
    if it points at ``home``. Raises KeyringError when neither fits.
    """
    if _socket_paths_fit(home):
        return home
    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
    alias = Path(tempfile.gettempdir()) / f"bootsync-gpg-{digest}"
    if not alias.is_symlink():
        alias.symlink_to(home.resolve(), target_is_directory=True)
    if alias.resolve() != home.resolve() or not _socket_paths_fit(alias):
        raise KeyringError(
            f"path too long for gpg-agent's sockets, and no usable alias at "
            f"{alias}; use a shorter home",
            source=str(home),
        )
    return alias


def _secret_fingerprints(home: Path) -> list[str]:
    secret = gpg_for(home, offline=False).list_keys(secret=True)
    return [key["fingerprint"].upper() for key in secret]


def _check_signable(data: bytes) -> None:
    """Refuse bytes that a clearsignature would not give back verbatim (ValueError)."""
    if not data.endswith(b"\n"):
        raise ValueError("data to clearsign must end with a newline")
    trailing = re.search(rb"[ \t]\r?\n", data)
    if trailing:
        number = data.count(b"\n", 0, trailing.start()) + 1
        raise ValueError(f"line {number} ends in spaces or tabs, which a clearsignature drops")
    for number, text in enumerate(data.split(b"\n"), 1):
        if len(text) > MAX_SIGNED_LINE:
            raise ValueError(
                f"line {number} is longer than {MAX_SIGNED_LINE} bytes; gpg would break it"
            )


def secret_key_fingerprint(armored: bytes) -> str:
    """The fingerprint (upper hex) of the one secret key in ``armored``; nothing is imported.

    KeyringError when it holds no secret key, or several.
    """
    with throwaway_home() as home:
        scanned = gpg_for(home).scan_keys_mem(armored)
    found = [str(key["fingerprint"]).upper() for key in scanned if key.get("type") == "sec"]
    if len(found) != 1:
        raise KeyringError(f"expected one secret key, found {len(found)}", source="secret key data")
    return found[0]


@dataclass(frozen=True)
class SigningKey:
    """A local secret key kept in its own GNUPGHOME, used to clearsign what we publish.

    Signing runs a gpg-agent in ``home``; :meth:`close` (or leaving a ``with``
    block) stops it.
    """

    home: Path  # may be a short alias of the given home (see usable_home)
    fingerprint: str

    @classmethod
    def create(cls, home: Path, *, name: str, email: str, expire: str = "0") -> SigningKey:
        """Generate an ed25519 signing key without passphrase in ``home`` (created 0700).

        Raises ValueError for a name, email or expiry gpg cannot take in batch mode, and
        KeyringError when ``home`` already holds a secret key or gpg fails.
        """
        for field, value in (("name", name), ("email", email), ("expire", expire)):
            if not _BATCH_VALUE.fullmatch(value):
                raise ValueError(f"{field} must be non-empty text without control characters")
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)
        home = usable_home(home)
        if _secret_fingerprints(home):
            raise KeyringError("already holds a secret key; open it instead", source=str(home))
        params = (
            f"Key-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign\nName-Real: {name}\n"
            f"Name-Email: {email}\nExpire-Date: {expire}\n%no-protection\n%commit\n"
        )
        result = gpg_for(home, offline=False).gen_key(params)
        if not result.fingerprint:
            raise KeyringError(
                f"gpg could not create a key: {result.stderr.strip()[-300:]}", source=str(home)
            )
        log.info("signing_key_created", home=str(home), fingerprint=result.fingerprint.upper())
        return cls(home=home, fingerprint=result.fingerprint.upper())

    @classmethod
    def open(cls, home: Path) -> SigningKey:
        """Open the single secret key in ``home``; KeyringError if there is none or several.

        A home more open than 0700 is tightened first (logged).
        """
        if not home.is_dir():
            raise KeyringError("signing key home does not exist", source=str(home))
        tighten_dir(home, most=PRIVATE_DIR_MODE)
        home = usable_home(home)
        found = _secret_fingerprints(home)
        if len(found) != 1:
            raise KeyringError(f"expected one secret key, found {len(found)}", source=str(home))
        return cls(home=home, fingerprint=found[0])

    @classmethod
    def open_or_create(cls, home: Path, *, name: str, email: str, expire: str = "0") -> SigningKey:
        """Open the key in ``home``, or create one there when it holds none."""
        if home.is_dir() and _secret_fingerprints(usable_home(home)):
            return cls.open(home)
        return cls.create(home, name=name, email=email, expire=expire)

    @classmethod
    def import_secret(cls, key_file: Path, home: Path) -> SigningKey:
        """Import an exported secret key (binary or armored) into ``home`` and open it.

        ``home`` must hold no other secret key; KeyringError if the file is unreadable
        or holds no secret key.
        """
        try:
            data = key_file.read_bytes()
        except OSError as exc:
            raise KeyringError(
                f"cannot read secret key: {exc.strerror}", source=str(key_file)
            ) from exc
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)
        home = usable_home(home)
        result = gpg_for(home).import_keys(data)
        if not getattr(result, "sec_imported", 0) and not _secret_fingerprints(home):
            raise KeyringError("holds no secret key", source=str(key_file))
        return cls.open(home)

    @classmethod
    async def aopen_or_create(
        cls, home: Path, *, name: str, email: str, expire: str = "0"
    ) -> SigningKey:
        """:meth:`open_or_create` in a worker thread."""
        return await asyncio.to_thread(
            cls.open_or_create, home, name=name, email=email, expire=expire
        )

    def clearsign(self, data: bytes) -> bytes:
        """Clearsign ``data``; verifying the result yields exactly ``data``.

        Raises ValueError for bytes a clearsignature cannot carry verbatim (no final
        newline, trailing blanks on a line, very long lines) and KeyringError when gpg
        cannot sign.
        """
        _check_signable(data)
        gpg = gpg_for(self.home, offline=False)
        signed = gpg.sign(data, keyid=self.fingerprint, clearsign=True)
        if signed.returncode != 0 or not signed.data or signed.status != "signature created":
            raise KeyringError(
                f"gpg could not sign: {signed.stderr.strip()[-300:]}", source=str(self.home)
            )
        # The precondition covers the cases we know; this proves the contract for the rest.
        check = gpg.decrypt(signed.data)
        if check.returncode != 0 or check.data != data:
            raise ValueError("gpg would not give these bytes back verbatim after signing")
        return bytes(signed.data)

    async def aclearsign(self, data: bytes) -> bytes:
        """:meth:`clearsign` in a worker thread."""
        return await asyncio.to_thread(self.clearsign, data)

    def export_public(self, armor: bool = False) -> bytes:
        """The public key, binary (as gpgv wants it) or ASCII-armored."""
        exported = gpg_for(self.home).export_keys(self.fingerprint, armor=armor)
        data = exported.encode("ascii") if isinstance(exported, str) else bytes(exported)
        if not data:
            raise KeyringError("gpg exported no public key", source=str(self.home))
        return data

    async def aexport_public(self, armor: bool = False) -> bytes:
        """:meth:`export_public` in a worker thread."""
        return await asyncio.to_thread(self.export_public, armor)

    def export_secret(self) -> bytes:
        """The secret key, ASCII-armored and unprotected (shared with the other regions)."""
        exported = gpg_for(self.home, offline=False).export_keys(
            self.fingerprint, secret=True, armor=True, expect_passphrase=False
        )
        data = exported.encode("ascii") if isinstance(exported, str) else bytes(exported)
        if b"PRIVATE KEY BLOCK" not in data:
            raise KeyringError("gpg exported no secret key", source=str(self.home))
        return data

    def adopt(self, armored: bytes) -> SigningKey:
        """The key in ``armored`` made the only secret key of ``home``; self if it already is.

        The key it replaces is kept in ``home`` as ``replaced-<fingerprint>.asc``
        (0600) before it is deleted, so a crash leaves at worst an empty home (a new
        key is made at the next start). KeyringError if ``armored`` holds not
        exactly one secret key, or gpg fails.
        """
        fingerprint = secret_key_fingerprint(armored)
        if fingerprint == self.fingerprint:
            return self
        backup = self.home / f"replaced-{self.fingerprint}.asc"
        write_atomic(backup, self.export_secret(), mode=0o600)
        gpg = gpg_for(self.home, offline=False)
        gpg.delete_keys(self.fingerprint, secret=True, expect_passphrase=False)
        gpg.delete_keys(self.fingerprint)
        gpg.import_keys(armored)
        adopted = SigningKey.open(self.home)
        if adopted.fingerprint != fingerprint:
            raise KeyringError(
                f"holds {adopted.fingerprint} after importing {fingerprint}", source=str(self.home)
            )
        return adopted

    def close(self) -> None:
        """Stop the gpg-agent that signing started in ``home``."""
        stop_agent(self.home)

    def __enter__(self) -> SigningKey:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
