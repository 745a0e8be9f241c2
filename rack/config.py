"""The rack daemon's configuration: a frozen dataclass loaded once at start.

``etc/rackd.toml`` documents every key and its default. :func:`load_config`
reads the file and the shared secret (blocking: call it before the event loop
starts), applies the environment (``BOOTSYNC_RACKD_*``, see common/ops/envconfig.py)
and then the command-line overrides, and raises one ConfigError listing every
problem with its key. The sync loop cannot be switched off: an interval of
0, ``"off"``, ``false`` or anything under one minute is refused.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from common.errors import ConfigError
from common.ops.envconfig import RACKD_ENV, name_env_problems, overlay_env
from common.ops.logging import LogFormat
from common.ops.tomlconfig import (
    ConfigReader,
    Table,
    check_absolute_path,
    check_host_port,
    check_http_url,
    read_toml,
    show,
)

DEFAULT_REGION_URLS = ("http://localhost:5240",)
DEFAULT_SECRET_FILE = Path("/etc/bootsync/rack-secret")
DEFAULT_DATA_DIR = Path("/var/lib/bootsync/rack")
DEFAULT_LISTEN = "0.0.0.0:5248"
DEFAULT_INTERVAL_MINUTES = 5
MAX_INTERVAL_MINUTES = 60
MAX_CONCURRENCY = 64
DEFAULT_SHUTDOWN_GRACE_S = 5
MAX_SHUTDOWN_GRACE_S = 600
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
_WILDCARD_HOSTS = ("0.0.0.0", "::")  # noqa: S104 - names them, binds nothing
SECRET_HINT = "`bootsync rack-secret` on the region host prints it"  # noqa: S105


def interval_problem(value: object) -> str | None:
    """Why ``value`` cannot be the sync interval in minutes, or None if it can."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 1 <= value <= MAX_INTERVAL_MINUTES
    ):
        return None
    return (
        f"the rack's sync loop cannot be switched off or slowed past an hour: use a "
        f"whole number of minutes from 1 to {MAX_INTERVAL_MINUTES} (default "
        f"{DEFAULT_INTERVAL_MINUTES}), got {show(value)}"
    )


@dataclass(frozen=True, kw_only=True)
class RackConfig:
    """Validated settings of one rack; build it directly in tests.

    Raises ConfigError for an interval that would switch the sync loop off, no
    region URL, or an empty secret.
    """

    region_urls: tuple[str, ...] = DEFAULT_REGION_URLS
    secret: str = field(repr=False)
    data_dir: Path = DEFAULT_DATA_DIR
    listen: str = DEFAULT_LISTEN
    shutdown_grace_s: int = DEFAULT_SHUTDOWN_GRACE_S
    advertise_url: str = ""
    hostname: str = ""
    concurrency: int = 8
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES
    log_level: str = "info"
    log_format: LogFormat = "auto"

    def __post_init__(self) -> None:
        problem = interval_problem(self.interval_minutes)
        if problem is not None:
            raise ConfigError(f"sync.interval_minutes: {problem}")
        if not self.region_urls:
            raise ConfigError("region.urls: at least one region URL is needed")
        if not self.secret:
            raise ConfigError(f"region.secret: the shared secret is empty ({SECRET_HINT})")

    @property
    def listen_host(self) -> str:
        """The address to bind (``::`` for ``[::]:5248``)."""
        return check_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        """The TCP port to bind."""
        return check_host_port(self.listen)[1]

    @property
    def rack_name(self) -> str:
        """The name the rack registers under: ``hostname``, else the host's name."""
        return self.hostname or socket.gethostname()

    @property
    def rack_url(self) -> str:
        """Where machines and the region reach ``/images/`` on this rack."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = self.listen_host
        if host in _WILDCARD_HOSTS:
            host = self.rack_name
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.listen_port}"

    @property
    def interval_s(self) -> float:
        """Seconds between timer-driven syncs."""
        return self.interval_minutes * 60.0


@dataclass(frozen=True)
class Overrides:
    """Command-line values that win over the file."""

    region_urls: Sequence[str] = ()
    secret_file: Path | None = None
    listen: str | None = None
    data_dir: Path | None = None


def load_config(
    path: Path | None,
    *,
    overrides: Overrides | None = None,
    environ: Mapping[str, str] | None = None,
) -> RackConfig:
    """Read ``path`` (None: defaults only), apply ``environ`` and ``overrides``, read the
    secret, validate.

    Only the ``BOOTSYNC_RACKD_*`` variables of ``environ`` are read (None: none).
    Raises ConfigError for an unreadable or invalid TOML file, unknown keys, wrong
    types, impossible values (a sync loop switched off among them) and a secret
    file that cannot be read; the message lists every problem with its key, and
    with the variable for a value from the environment.
    """
    data = read_toml(path) if path is not None else {}
    env = overlay_env(data, RACKD_ENV, environ or {})
    reader = ConfigReader(env.data, source=str(path) if path is not None else "defaults")
    settings = _read(reader, env.data)
    name_env_problems(reader.problems, env.origins)
    reader.finish()
    return _apply(settings, overrides or Overrides())


def _read(reader: ConfigReader, data: Mapping[str, Any]) -> dict[str, Any]:
    region = reader.table("region")
    server = reader.table("server")
    storage = reader.table("storage")
    sync = reader.table("sync")
    log = reader.table("log")
    raw_region = data.get("region") if isinstance(data.get("region"), dict) else {}
    raw_sync = data.get("sync") if isinstance(data.get("sync"), dict) else {}
    settings: dict[str, Any] = {
        "region_urls": _urls(reader, region, cast(Mapping[str, Any], raw_region)),
        "data_dir": Path(
            storage.string("data_dir", str(DEFAULT_DATA_DIR), check=check_absolute_path)
        ),
        "listen": server.string("listen", DEFAULT_LISTEN, check=check_host_port),
        "shutdown_grace_s": server.integer(
            "shutdown_grace_s", DEFAULT_SHUTDOWN_GRACE_S, minimum=0, maximum=MAX_SHUTDOWN_GRACE_S
        ),
        "advertise_url": server.string("advertise_url", "", check=_check_optional_url),
        "hostname": server.string("hostname", ""),
        "concurrency": sync.integer("concurrency", 8, minimum=1, maximum=MAX_CONCURRENCY),
        "interval_minutes": _interval(reader, sync, cast(Mapping[str, Any], raw_sync)),
        "log_level": log.string("level", "info", choices=LOG_LEVELS),
        "log_format": log.string("format", "auto", choices=LOG_FORMATS),
    }
    inline = region.string("secret", "")
    secret_file = region.string("secret_file", "", check=check_absolute_path)
    if inline and secret_file:
        region.problem("secret", "set secret or secret_file, not both")
    settings["secret"] = inline
    settings["secret_file"] = (
        Path(secret_file) if secret_file else (None if inline else DEFAULT_SECRET_FILE)
    )
    return settings


def _interval(reader: ConfigReader, sync: Table, raw: Mapping[str, Any]) -> int:
    mark = len(reader.problems)
    minutes = sync.integer(
        "interval_minutes", DEFAULT_INTERVAL_MINUTES, minimum=1, maximum=MAX_INTERVAL_MINUTES
    )
    if len(reader.problems) > mark:
        # The generic "whole number" note does not say why 0 or "off" is refused.
        reader.problems[mark:] = [
            f"sync.interval_minutes: {interval_problem(raw.get('interval_minutes'))}"
        ]
    return minutes


def _urls(reader: ConfigReader, region: Table, raw: Mapping[str, Any]) -> tuple[str, ...]:
    if "urls" not in raw:
        return DEFAULT_REGION_URLS
    value = raw["urls"]
    mark = len(reader.problems)
    # Table has no list reader: this marks the key as read, and its "must be a
    # string" note is replaced by the list checks below.
    region.string("urls", "")
    del reader.problems[mark:]
    if not isinstance(value, list) or not value:
        region.problem("urls", f"must be a non-empty list of region URLs, got {show(value)}")
        return DEFAULT_REGION_URLS
    urls: list[str] = []
    for n, url in enumerate(value):
        try:
            urls.append(check_http_url(url if isinstance(url, str) else "").rstrip("/"))
        except ValueError:
            region.problem(f"urls[{n}]", f"must be an http:// or https:// URL, got {show(url)}")
    return tuple(urls) or DEFAULT_REGION_URLS


def _check_optional_url(text: str) -> None:
    if text:
        check_http_url(text)


def read_secret(path: Path, *, key: str) -> str:
    """The secret in ``path`` (surrounding whitespace stripped); ConfigError naming ``key``."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{key}: cannot read {path}: {reason} ({SECRET_HINT})") from exc
    if not secret:
        raise ConfigError(f"{key}: {path} is empty ({SECRET_HINT})")
    return secret


def _apply(settings: dict[str, Any], overrides: Overrides) -> RackConfig:
    problems: list[str] = []
    if overrides.region_urls:
        urls = []
        for url in overrides.region_urls:
            try:
                urls.append(check_http_url(url).rstrip("/"))
            except ValueError as exc:
                problems.append(f"--region: {exc}")
        settings["region_urls"] = tuple(urls)
    if overrides.listen is not None:
        try:
            check_host_port(overrides.listen)
            settings["listen"] = overrides.listen
        except ValueError as exc:
            problems.append(f"--listen: {exc}")
    if overrides.data_dir is not None:
        settings["data_dir"] = overrides.data_dir.absolute()
    secret_file: Path | None = settings.pop("secret_file")
    key = "region.secret_file"
    if overrides.secret_file is not None:
        secret_file, key = overrides.secret_file.absolute(), "--secret-file"
        settings["secret"] = ""
    if secret_file is not None:
        try:
            settings["secret"] = read_secret(secret_file, key=key)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
    return RackConfig(**settings)
