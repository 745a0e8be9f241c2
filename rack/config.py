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

from common.errors import ConfigError
from common.ops.connlimit import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CLIENT_CONNECTIONS,
)
from common.ops.envconfig import RACKD_ENV, overlay_env
from common.ops.logging import LOG_FORMATS, LOG_LEVELS, LogFormat
from common.ops.server_config import (
    DEFAULT_SHUTDOWN_GRACE_S,
    read_server,
)
from common.ops.tomlconfig import (
    ConfigReader,
    Flags,
    check_absolute_path,
    check_host_port,
    check_http_url,
    read_toml,
    show,
)
from common.transfer.limits import DEFAULT_MIN_RATE, DEFAULT_RATE_WINDOW_S, TransferLimits

DEFAULT_REGION_URLS = ("http://localhost:5240",)
DEFAULT_SECRET_FILE = Path("/etc/bootsync/rack-secret")
DEFAULT_DATA_DIR = Path("/var/lib/bootsync/rack")
DEFAULT_LISTEN = "0.0.0.0:5248"
DEFAULT_INTERVAL_MINUTES = 5
MAX_INTERVAL_MINUTES = 60
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64
DEFAULT_TFTP_LISTEN = "0.0.0.0:69"
DEFAULT_TFTP_MAX_BLKSIZE = 1468
MAX_TFTP_BLKSIZE = 65464
DEFAULT_TFTP_MAX_WINDOWSIZE = 64
DEFAULT_TFTP_MAX_SESSIONS = 256
_WILDCARD_HOSTS = ("0.0.0.0", "::")  # noqa: S104 - names them, binds nothing
SECRET_HINT = "`bootsync rack-secret` on the region host prints it"  # noqa: S105


INTERVAL_RULE = (
    f"the rack's sync loop cannot be switched off or slowed past an hour: use a "
    f"whole number of minutes from 1 to {MAX_INTERVAL_MINUTES} (default "
    f"{DEFAULT_INTERVAL_MINUTES})"
)
"""Why an interval is refused; the problem ends ``, got <value>``."""


_MAAS_SUFFIXES = ("/MAAS/api/2.0", "/MAAS")


def region_base_url(url: str) -> str:
    """The region's base URL for ``url`` as typed: with or without ``/MAAS/``.

    MAAS users give a region as ``http://host:5240/MAAS/`` (or the API URL
    ``…/MAAS/api/2.0/``); the rack protocol's paths start with ``/MAAS/`` already,
    so that suffix and a trailing ``/`` are dropped: ``http://host:5240``.
    """
    base = url.rstrip("/")
    for suffix in _MAAS_SUFFIXES:
        if base.endswith(suffix):
            return base.removesuffix(suffix).rstrip("/")
    return base


def interval_problem(value: object) -> str | None:
    """Why ``value`` cannot be the sync interval in minutes, or None if it can."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 1 <= value <= MAX_INTERVAL_MINUTES
    ):
        return None
    return f"{INTERVAL_RULE}, got {show(value)}"


@dataclass(frozen=True, kw_only=True)
class RackConfig:
    """Validated settings of one rack; build it directly in tests.

    Raises ConfigError for an interval that would switch the sync loop off, no
    region URL, or an empty secret. Region URLs are kept as base URLs
    (:func:`region_base_url`: ``http://host:5240/MAAS/`` → ``http://host:5240``).
    """

    region_urls: tuple[str, ...] = DEFAULT_REGION_URLS
    secret: str = field(repr=False)
    data_dir: Path = DEFAULT_DATA_DIR
    listen: str = DEFAULT_LISTEN
    shutdown_grace_s: int = DEFAULT_SHUTDOWN_GRACE_S
    header_timeout_s: int = DEFAULT_HEADER_TIMEOUT_S
    max_client_connections: int = DEFAULT_MAX_CLIENT_CONNECTIONS
    metrics_listen: str = ""  # "": /metrics on the main port
    metrics_token: str = field(default="", repr=False)  # read from metrics.token_file
    advertise_url: str = ""
    hostname: str = ""
    concurrency: int = DEFAULT_CONCURRENCY
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES
    log_level: str = "info"
    log_format: LogFormat = "auto"
    min_rate: int = DEFAULT_MIN_RATE  # downloads' minimum rate, bytes per second
    rate_window_s: int = int(DEFAULT_RATE_WINDOW_S)
    tftp_enabled: bool = True
    tftp_listen: str = DEFAULT_TFTP_LISTEN
    tftp_max_blksize: int = DEFAULT_TFTP_MAX_BLKSIZE
    tftp_max_windowsize: int = DEFAULT_TFTP_MAX_WINDOWSIZE
    tftp_max_sessions: int = DEFAULT_TFTP_MAX_SESSIONS
    boot_templates_dir: Path | None = None  # [boot] templates_dir (rack/bootconfig.py)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "region_urls", tuple(region_base_url(url) for url in self.region_urls)
        )
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

    @property
    def transfer(self) -> TransferLimits:
        """The minimum rate of downloads from the region."""
        return TransferLimits(min_rate=self.min_rate, rate_window_s=self.rate_window_s)


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
    with the variable for a value from the environment. Problems of the file come
    first; those of the command line and the secret file once the file is valid.
    """
    data = read_toml(path) if path is not None else {}
    env = overlay_env(data, RACKD_ENV, environ or {})
    reader = ConfigReader(
        env.data, source=str(path) if path is not None else "defaults", origins=env.origins
    )
    return _read(reader, Flags(), overrides or Overrides())


def _read(reader: ConfigReader, flags: Flags, overrides: Overrides) -> RackConfig:
    region = reader.table("region")
    server = reader.table("server")
    storage = reader.table("storage")
    sync = reader.table("sync")
    log = reader.table("log")
    region_urls = region.strings(
        "urls", DEFAULT_REGION_URLS, what="region URLs", non_empty=True, check=check_http_url
    )
    inline_secret = region.string("secret", "")
    secret_file = region.string("secret_file", "", check=check_absolute_path)
    if inline_secret and secret_file:
        region.problem("secret", "set secret or secret_file, not both")
    data_dir = Path(storage.string("data_dir", str(DEFAULT_DATA_DIR), check=check_absolute_path))
    metrics_table = reader.table("metrics")
    web = read_server(server, metrics_table, default_listen=DEFAULT_LISTEN)
    advertise_url = server.string("advertise_url", "", check=_check_optional_url)
    hostname = server.string("hostname", "")
    concurrency = sync.integer(
        "concurrency", DEFAULT_CONCURRENCY, minimum=1, maximum=MAX_CONCURRENCY
    )
    interval_minutes = sync.integer(
        "interval_minutes",
        DEFAULT_INTERVAL_MINUTES,
        minimum=1,
        maximum=MAX_INTERVAL_MINUTES,
        rule=INTERVAL_RULE,
    )
    min_rate = sync.integer("min_rate", DEFAULT_MIN_RATE, minimum=0)
    rate_window_s = sync.integer("rate_window_s", int(DEFAULT_RATE_WINDOW_S), minimum=1)
    log_level = log.choice("level", "info", LOG_LEVELS)
    log_format = log.choice("format", "auto", LOG_FORMATS)
    tftp = reader.table("tftp")
    tftp_enabled = tftp.boolean("enabled", True)
    tftp_listen = tftp.string("listen", DEFAULT_TFTP_LISTEN, check=check_host_port)
    tftp_max_blksize = tftp.integer(
        "max_blksize", DEFAULT_TFTP_MAX_BLKSIZE, minimum=512, maximum=MAX_TFTP_BLKSIZE
    )
    tftp_max_windowsize = tftp.integer(
        "max_windowsize", DEFAULT_TFTP_MAX_WINDOWSIZE, minimum=1, maximum=65535
    )
    tftp_max_sessions = tftp.integer(
        "max_sessions", DEFAULT_TFTP_MAX_SESSIONS, minimum=1, maximum=65535
    )
    boot_templates = reader.table("boot").string("templates_dir", "", check=_check_optional_path)
    reader.finish()
    region_urls = flags.strings(
        "--region", overrides.region_urls, region_urls, check=check_http_url
    )
    listen = flags.string("--listen", overrides.listen, web.listen, check=check_host_port)
    data_dir = flags.path("--data-dir", overrides.data_dir, data_dir)
    secret = _secret(flags, overrides.secret_file, inline_secret, secret_file)
    flags.finish()
    return RackConfig(
        region_urls=tuple(region_base_url(url) for url in region_urls),
        secret=secret,
        data_dir=data_dir,
        listen=listen,
        shutdown_grace_s=web.shutdown_grace_s,
        header_timeout_s=web.header_timeout_s,
        max_client_connections=web.max_client_connections,
        metrics_listen=web.metrics_listen,
        metrics_token=web.metrics_token,
        advertise_url=advertise_url,
        hostname=hostname,
        concurrency=concurrency,
        interval_minutes=interval_minutes,
        log_level=log_level,
        log_format=log_format,
        min_rate=min_rate,
        rate_window_s=rate_window_s,
        tftp_enabled=tftp_enabled,
        tftp_listen=tftp_listen,
        tftp_max_blksize=tftp_max_blksize,
        tftp_max_windowsize=tftp_max_windowsize,
        tftp_max_sessions=tftp_max_sessions,
        boot_templates_dir=Path(boot_templates) if boot_templates else None,
    )


def _secret(flags: Flags, flag_file: Path | None, inline: str, file_name: str) -> str:
    """The secret: ``--secret-file``'s, else ``region.secret_file``'s, else ``region.secret``,
    else the default file's; a problem (and "") when that file cannot be read."""
    if flag_file is not None:
        path, key = flag_file.absolute(), "--secret-file"
    elif file_name:
        path, key = Path(file_name), "region.secret_file"
    elif inline:
        return inline
    else:
        path, key = DEFAULT_SECRET_FILE, "region.secret_file"
    try:
        return read_secret(path)
    except ValueError as exc:
        flags.problem(key, str(exc))
        return ""


def _check_optional_url(text: str) -> None:
    if text:
        check_http_url(text)


def _check_optional_path(text: str) -> None:
    if text:
        check_absolute_path(text)


def read_secret(path: Path) -> str:
    """The secret in ``path``, surrounding whitespace stripped (blocking).

    Raises ValueError saying why it cannot be, completing ``<key>: ...``.
    """
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read {path}: {reason} ({SECRET_HINT})") from exc
    if not secret:
        raise ValueError(f"{path} is empty ({SECRET_HINT})")
    return secret
