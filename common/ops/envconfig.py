"""What a daemon takes from its surroundings: environment overrides and its data directory.

Environment variables let a systemd drop-in change a setting without editing
the TOML file (``Environment=BOOTSYNC_REGIOND_LOG_LEVEL=debug``). Precedence is
command line > environment > file > default. Each variable stands for one
config key; :func:`overlay_env` writes the set ones into the parsed TOML
document before it is validated, so they get the same checks, and records
where each came from (:class:`~common.ops.tomlconfig.ConfigReader` takes those
origins and names the variable in a problem). An empty variable counts as
unset, so a drop-in can clear one set by another.

:func:`prepare_data_dir` and :func:`data_dir_problem` create or check the data
directory with a message naming the config key.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.errors import ConfigError

Kind = Literal["string", "integer", "list"]


@dataclass(frozen=True)
class EnvVar:
    """One environment variable and the config key it overrides.

    ``voids`` lists keys of the same table the value makes meaningless (a secret
    file from the environment voids a secret written in the file).
    """

    name: str
    key: str  # dotted: "server.listen"
    kind: Kind = "string"
    voids: tuple[str, ...] = field(default=())


def _common(prefix: str) -> tuple[EnvVar, ...]:
    return (
        EnvVar(f"{prefix}_LISTEN", "server.listen"),
        EnvVar(f"{prefix}_SHUTDOWN_GRACE_S", "server.shutdown_grace_s", "integer"),
        EnvVar(f"{prefix}_DATA_DIR", "storage.data_dir"),
        EnvVar(f"{prefix}_LOG_LEVEL", "log.level"),
        EnvVar(f"{prefix}_LOG_FORMAT", "log.format"),
    )


REGIOND_ENV: tuple[EnvVar, ...] = (
    *_common("BOOTSYNC_REGIOND"),
    EnvVar("BOOTSYNC_REGIOND_HTTP_PROXY", "proxy.http_proxy"),
)
"""The region's variables (etc/regiond.toml documents them)."""

RACKD_ENV: tuple[EnvVar, ...] = (
    *_common("BOOTSYNC_RACKD"),
    EnvVar("BOOTSYNC_RACKD_ADVERTISE_URL", "server.advertise_url"),
    EnvVar("BOOTSYNC_RACKD_REGION_URLS", "region.urls", "list"),
    EnvVar("BOOTSYNC_RACKD_SECRET_FILE", "region.secret_file", voids=("secret",)),
)
"""The rack's variables (etc/rackd.toml documents them)."""


@dataclass(frozen=True)
class EnvOverlay:
    """A config document with the environment applied, and where each value came from."""

    data: dict[str, Any]
    origins: dict[str, str]  # dotted key -> variable name


def overlay_env(
    data: Mapping[str, Any], variables: Sequence[EnvVar], environ: Mapping[str, str]
) -> EnvOverlay:
    """``data`` (a parsed TOML document, not modified) with each set variable applied.

    A value that does not convert (``"abc"`` for an integer) is kept as text, so
    validation reports it under its key like a wrong value in the file.
    """
    result: dict[str, Any] = copy.deepcopy(dict(data))
    origins: dict[str, str] = {}
    for var in variables:
        text = environ.get(var.name, "").strip()
        if not text:
            continue
        *tables, name = var.key.split(".")
        table = result
        for part in tables:
            if not isinstance(table.get(part), dict):
                table[part] = {}  # a non-table in the file is replaced, as a value would be
            table = table[part]
        table[name] = _convert(text, var.kind)
        for voided in var.voids:
            table.pop(voided, None)
        origins[var.key] = var.name
    return EnvOverlay(data=result, origins=origins)


def _convert(text: str, kind: Kind) -> Any:
    if kind == "integer" and re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    if kind == "list":
        return [part for part in re.split(r"[\s,]+", text) if part]
    return text


# --- the data directory --------------------------------------------------------------------


def prepare_data_dir(path: Path, *, key: str) -> None:
    """Create ``path`` (mode 0750 at most, parents as needed) unless it exists (blocking).

    Raises ConfigError naming ``key`` when it cannot be created, is not a
    directory, or is not writable by this process.
    """
    try:
        path.mkdir(mode=0o750, parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{key}: {path} exists but is not a directory") from None
    except OSError as exc:
        raise ConfigError(
            f"{key}: cannot create {path}: {exc.strerror or exc} (running as uid {os.getuid()})"
        ) from exc
    problem = data_dir_problem(path, key=key)
    if problem is not None:
        raise ConfigError(problem)


def data_dir_problem(path: Path, *, key: str) -> str | None:
    """Why the daemon could not use ``path`` as its data directory, or None (blocking).

    A missing directory is fine when its nearest existing parent is writable:
    the daemon creates it at start.
    """
    uid = os.getuid()
    if path.exists():
        if not path.is_dir():
            return f"{key}: {path} exists but is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{key}: {path} is not writable by uid {uid}"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return (
            f"{key}: {path} does not exist and cannot be created: {parent} is not a "
            f"writable directory for uid {uid}"
        )
    return None
