"""The shared secret racks authenticate with: ``<data_dir>/rack-secret``.

The region creates the file at its first start (32 random bytes as hex, mode
0600; one found more open than 0640 is made 0600); ``bootsync rack-secret``
prints it for the operator to give to each rack. It changes only when the
region joins a cluster whose secret differs: every region of a cluster takes
the cluster's (:func:`replace_secret`, from region/cluster/secrets.py) before
its rack hub opens.
Racks send it as ``Authorization: Bearer <secret>``; :func:`check_bearer`
compares in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
from pathlib import Path

from common.errors import ConfigError
from common.ops.logging import get_logger
from common.rackproto import AUTH_SCHEME
from common.storage.atomic import write_atomic
from common.storage.modes import tighten_file

log = get_logger("rack_secret")

SECRET_NAME = "rack-secret"  # noqa: S105 - a file name, not a secret
MIN_LENGTH = 32


def secret_path(data_dir: Path) -> Path:
    """``<data_dir>/rack-secret``."""
    return data_dir / SECRET_NAME


def read_secret(data_dir: Path) -> str:
    """The secret stored in ``data_dir`` (blocking).

    Raises ConfigError when the file is missing (the region has never started
    with this data directory), unreadable, or holds no usable secret.
    """
    path = secret_path(data_dir)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist: the region creates it at its first start "
            "(start the region once, or give the right --data-dir/--config)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the rack secret: {exc}") from exc
    if len(text) < MIN_LENGTH or any(c.isspace() for c in text):
        raise ConfigError(
            f"{path}: not a rack secret (one word of at least {MIN_LENGTH} characters expected)"
        )
    tighten_file(path)  # a file others could read becomes 0600 (logged)
    return text


def load_or_create_secret(data_dir: Path) -> str:
    """The secret in ``data_dir``, created first if there is none (blocking).

    Creation is exclusive and the file appears complete, so two processes
    starting at once agree on one secret. Raises ConfigError as
    :func:`read_secret` does, OSError if the file cannot be written.
    """
    path = secret_path(data_dir)
    if path.exists():
        return read_secret(data_dir)
    secret = secrets.token_hex(32)
    try:
        write_atomic(path, f"{secret}\n".encode(), mode=0o600, exclusive=True)
    except FileExistsError:
        return read_secret(data_dir)
    log.info("rack_secret_created", path=str(path))
    return secret


def replace_secret(data_dir: Path, secret: str) -> bool:
    """Make ``secret`` the one stored in ``data_dir`` (0600, atomically); whether it changed.

    A region of a cluster takes the cluster's secret this way (blocking). ValueError
    for text that is no usable secret.
    """
    if len(secret) < MIN_LENGTH or any(c.isspace() for c in secret) or not secret.isascii():
        raise ValueError(f"not a rack secret (one word of at least {MIN_LENGTH} characters)")
    path = secret_path(data_dir)
    with contextlib.suppress(ConfigError):
        if path.exists() and read_secret(data_dir) == secret:
            return False
    write_atomic(path, f"{secret}\n".encode(), mode=0o600)
    return True


async def aload_or_create_secret(data_dir: Path) -> str:
    """:func:`load_or_create_secret` in a worker thread."""
    return await asyncio.to_thread(load_or_create_secret, data_dir)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != AUTH_SCHEME.lower() or not token:
        return None
    return token


def check_bearer(header: str | None, secret: str) -> bool:
    """True when ``header`` carries ``secret`` (compared in constant time)."""
    token = bearer_token(header)
    if token is None:
        return False
    return hmac.compare_digest(token.encode(), secret.encode())
