"""The region daemon's configuration: a frozen dataclass loaded once at start.

``etc/regiond.toml`` documents every key and its default. :func:`load_config`
reads the file (blocking: call it before the event loop starts, or through
``asyncio.to_thread``), applies the environment (``BOOTSYNC_REGIOND_*``, see
common/ops/envconfig.py) and then the command-line overrides, and raises one
ConfigError that lists every problem with its key.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from common.ops.connlimit import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CLIENT_CONNECTIONS,
)
from common.ops.envconfig import REGIOND_ENV, EnvVar, overlay_env
from common.ops.logging import LOG_FORMATS, LOG_LEVELS, LogFormat, get_logger
from common.ops.server_config import (
    DEFAULT_SHUTDOWN_GRACE_S,
    read_server,
)
from common.ops.tomlconfig import (
    ConfigReader,
    Flags,
    Table,
    check_absolute_path,
    check_host_port,
    check_http_url,
    read_toml,
    show,
)
from common.transfer.limits import (
    DEFAULT_MAX_METADATA_BYTES,
    DEFAULT_MIN_RATE,
    DEFAULT_RATE_WINDOW_S,
    MIN_METADATA_BYTES,
    TransferLimits,
)
from simplestreams.screen import DEFAULT_MAX_ITEM_SIZE

_log = get_logger("config")

DB_NAME = "region.db"
"""The region's SQLite file inside its data directory (the daemon and the admin CLI share it)."""

DEFAULT_LISTEN = "0.0.0.0:5240"
DEFAULT_DATA_DIR = Path("/var/lib/bootsync/region")
DEFAULT_SOURCE_URL = "http://images.maas.io/ephemeral-v3/stable/"
"""The boot source a region without any creates at its first import."""
SHIPPED_KEYRING_NAME = "ubuntu-cloudimage-keyring.gpg"

DEFAULT_IMPORT_INTERVAL_MINUTES = 60
DEFAULT_IMPORT_CONCURRENCY = 8
"""Downloads an import runs at once (``import.concurrency``)."""
MAX_CONCURRENCY = 64
DEFAULT_FROZEN_AFTER_HOURS = 72
DEFAULT_HEARTBEAT_SECONDS = 10
"""Seconds between a region's heartbeats (``cluster.heartbeat_seconds``)."""
DEFAULT_LEASE_SECONDS = 30
"""Seconds a lease lasts unless renewed (``cluster.lease_seconds``)."""
MAX_HEARTBEAT_SECONDS = 3600


def shipped_keyring() -> Path:
    """The Ubuntu cloud-image keyring shipped in ``common/data`` (verifies images.maas.io)."""
    # setuptools installs package data as plain files, so the traversable is a real path.
    return Path(str(resources.files("common") / "data" / SHIPPED_KEYRING_NAME))


UBUNTU_KEYRING_PATHS = (
    "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg",
    "/snap/maas/current/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg",
)
"""Where Ubuntu's ubuntu-keyring package and the MAAS snap keep the cloud-image keyring
(the paths MAAS's docs give to ``boot-sources create keyring_filename=``)."""


@dataclass
class KeyringLocator:
    """Where a boot source's ``keyring_filename`` is read from.

    A path of ``well_known`` that does not exist on this host is read from
    ``shipped`` (the same Ubuntu cloud-image keyring), so MAAS's documented
    commands work on hosts without Ubuntu's package; the first substitution of
    each path is logged (``ubuntu_keyring_substituted``). Any other path, or a
    well-known one that exists, is read as given.
    """

    well_known: tuple[str, ...] = UBUNTU_KEYRING_PATHS
    shipped: Path = field(default_factory=shipped_keyring)
    _noted: set[str] = field(default_factory=set, init=False, repr=False)

    async def locate(self, filename: str) -> Path:
        """The file to read for ``filename`` (checks the file off the event loop)."""
        path = Path(filename)
        if filename not in self.well_known or await asyncio.to_thread(path.exists):
            return path
        if filename not in self._noted:
            self._noted.add(filename)
            _log.info(
                "ubuntu_keyring_substituted", keyring_filename=filename, shipped=str(self.shipped)
            )
        return self.shipped


_KEYRINGS = KeyringLocator()


async def keyring_file(filename: str) -> Path:
    """The region's :meth:`KeyringLocator.locate` (one per process: each path logged once)."""
    return await _KEYRINGS.locate(filename)


@dataclass(frozen=True, kw_only=True)
class RegionConfig:
    """Validated settings of one region; build it directly in tests."""

    listen: str = DEFAULT_LISTEN
    shutdown_grace_s: int = DEFAULT_SHUTDOWN_GRACE_S
    header_timeout_s: int = DEFAULT_HEADER_TIMEOUT_S
    max_client_connections: int = DEFAULT_MAX_CLIENT_CONNECTIONS
    metrics_listen: str = ""  # "": /metrics on the main port
    metrics_token: str = field(default="", repr=False)  # read from metrics.token_file
    data_dir: Path = DEFAULT_DATA_DIR
    log_level: str = "info"
    log_format: LogFormat = "auto"
    import_interval_minutes: int = DEFAULT_IMPORT_INTERVAL_MINUTES
    import_concurrency: int = DEFAULT_IMPORT_CONCURRENCY
    create_default_source: bool = True
    default_source_url: str = DEFAULT_SOURCE_URL
    default_keyring: Path = field(default_factory=shipped_keyring)
    frozen_after_hours: int = DEFAULT_FROZEN_AFTER_HOURS
    max_item_size: int = DEFAULT_MAX_ITEM_SIZE  # larger items are refused (import.max_item_size)
    http_proxy: str = ""
    min_rate: int = DEFAULT_MIN_RATE
    rate_window_s: int = int(DEFAULT_RATE_WINDOW_S)
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
    database_url: str = ""  # [database] url; "": SQLite at <data_dir>/region.db
    cluster_name: str = ""  # [cluster] name; "": the host name (region/cluster/identity.py)
    cluster_url: str = ""  # [cluster] url; "": http://<host name>:<listen port>
    heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS
    lease_seconds: int = DEFAULT_LEASE_SECONDS

    @property
    def listen_host(self) -> str:
        """The address to bind (``::`` for ``[::]:5240``)."""
        return check_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        """The TCP port to bind."""
        return check_host_port(self.listen)[1]

    @property
    def transfer(self) -> TransferLimits:
        """The minimum rate of upstream transfers and the metadata size cap."""
        return TransferLimits(
            min_rate=self.min_rate,
            rate_window_s=self.rate_window_s,
            max_metadata_bytes=self.max_metadata_bytes,
        )

    @property
    def db_path(self) -> Path:
        """``<data_dir>/region.db``."""
        return self.data_dir / DB_NAME

    @property
    def database(self) -> Path | str:
        """What :func:`region.db.connection.open_db` opens: a SQLite file or a PostgreSQL URL."""
        if self.database_url.startswith("sqlite://"):
            return Path(self.database_url[len("sqlite://") :])
        return self.database_url or self.db_path


@dataclass(frozen=True)
class Overrides:
    """Command-line values that win over the file: ``--listen`` and ``--data-dir``."""

    listen: str | None = None
    data_dir: Path | None = None


def load_config(
    path: Path | None,
    *,
    overrides: Overrides | None = None,
    environ: Mapping[str, str] | None = None,
) -> RegionConfig:
    """Read ``path`` (None: defaults only), apply ``environ`` and ``overrides``, validate.

    Only the ``BOOTSYNC_REGIOND_*`` variables of ``environ`` are read (None: none).
    Raises ConfigError for an unreadable or invalid TOML file, unknown keys, wrong
    types and impossible values; the message lists every problem with its key
    (``import.interval_minutes: must be a whole number ≥ 1, got 0``), and with the
    variable for a value from the environment. Problems of the file come first;
    those of the command line, each naming its flag, once the file is valid.
    """
    data = read_toml(path) if path is not None else {}
    env = overlay_env(data, (*REGIOND_ENV, DATABASE_URL_ENV, *CLUSTER_ENV), environ or {})
    reader = ConfigReader(
        env.data, source=str(path) if path is not None else "defaults", origins=env.origins
    )
    return _read(reader, Flags(), overrides or Overrides())


def _read(reader: ConfigReader, flags: Flags, overrides: Overrides) -> RegionConfig:
    server = reader.table("server")
    storage = reader.table("storage")
    log = reader.table("log")
    imports = reader.table("import")
    proxy = reader.table("proxy")
    metrics_table = reader.table("metrics")
    web = read_server(server, metrics_table, default_listen=DEFAULT_LISTEN)
    data_dir = Path(storage.string("data_dir", str(DEFAULT_DATA_DIR), check=check_absolute_path))
    log_level = log.choice("level", "info", LOG_LEVELS)
    log_format = log.choice("format", "auto", LOG_FORMATS)
    interval_minutes = imports.integer(
        "interval_minutes", DEFAULT_IMPORT_INTERVAL_MINUTES, minimum=1
    )
    concurrency = imports.integer(
        "concurrency", DEFAULT_IMPORT_CONCURRENCY, minimum=1, maximum=MAX_CONCURRENCY
    )
    create_default_source = imports.boolean("create_default_source", True)
    default_source_url = imports.string(
        "default_source_url", DEFAULT_SOURCE_URL, check=check_http_url
    )
    default_keyring = imports.string("default_keyring", "", check=_check_keyring)
    frozen_after_hours = imports.integer(
        "frozen_after_hours", DEFAULT_FROZEN_AFTER_HOURS, minimum=1
    )
    max_item_size = imports.integer("max_item_size", DEFAULT_MAX_ITEM_SIZE, minimum=1)
    min_rate = imports.integer("min_rate", DEFAULT_MIN_RATE, minimum=0)
    rate_window_s = imports.integer("rate_window_s", int(DEFAULT_RATE_WINDOW_S), minimum=1)
    max_metadata_bytes = imports.integer(
        "max_metadata_bytes", DEFAULT_MAX_METADATA_BYTES, minimum=MIN_METADATA_BYTES
    )
    http_proxy = proxy.string("http_proxy", "", check=_check_proxy)
    database_url = reader.table("database").string("url", "", check=_check_database_url)
    cluster = _read_cluster(reader.table("cluster"))
    reader.finish()
    listen = flags.string("--listen", overrides.listen, web.listen, check=check_host_port)
    data_dir = flags.path("--data-dir", overrides.data_dir, data_dir)
    flags.finish()
    return RegionConfig(
        listen=listen,
        shutdown_grace_s=web.shutdown_grace_s,
        header_timeout_s=web.header_timeout_s,
        max_client_connections=web.max_client_connections,
        metrics_listen=web.metrics_listen,
        metrics_token=web.metrics_token,
        data_dir=data_dir,
        log_level=log_level,
        log_format=log_format,
        import_interval_minutes=interval_minutes,
        import_concurrency=concurrency,
        create_default_source=create_default_source,
        default_source_url=default_source_url,
        default_keyring=Path(default_keyring) if default_keyring else shipped_keyring(),
        frozen_after_hours=frozen_after_hours,
        max_item_size=max_item_size,
        http_proxy=http_proxy,
        min_rate=min_rate,
        rate_window_s=rate_window_s,
        max_metadata_bytes=max_metadata_bytes,
        database_url=database_url,
        cluster_name=cluster.name,
        cluster_url=cluster.url,
        heartbeat_seconds=cluster.heartbeat_seconds,
        lease_seconds=cluster.lease_seconds,
    )


@dataclass(frozen=True)
class _Cluster:
    name: str
    url: str
    heartbeat_seconds: int
    lease_seconds: int


def _read_cluster(table: Table) -> _Cluster:
    """``[cluster]``: this region's name and URL, its heartbeat and the lease period."""
    heartbeat = table.integer(
        "heartbeat_seconds", DEFAULT_HEARTBEAT_SECONDS, minimum=1, maximum=MAX_HEARTBEAT_SECONDS
    )
    lease = table.integer("lease_seconds", DEFAULT_LEASE_SECONDS, minimum=2)
    if lease < 2 * heartbeat:
        table.problem(
            "lease_seconds",
            f"must be at least twice cluster.heartbeat_seconds ({heartbeat}), got {lease}",
        )
        lease = 2 * heartbeat
    return _Cluster(
        name=table.string("name", "", check=lambda text: text and check_region_name(text)),
        url=table.string("url", "", check=lambda text: text and check_http_url(text)),
        heartbeat_seconds=heartbeat,
        lease_seconds=lease,
    )


_REGION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def check_region_name(text: str) -> str:
    """``text`` if it names a region (1-63 letters, digits, ``.``, ``_``, ``-``); else ValueError."""
    if not _REGION_NAME.fullmatch(text):
        raise ValueError(
            f"must be 1 to 63 letters, digits, '.', '_' or '-' (starting with a letter "
            f"or digit), got {show(text)}"
        )
    return text


DATABASE_URL_ENV = EnvVar("BOOTSYNC_REGIOND_DATABASE_URL", "database.url")
CLUSTER_ENV = (
    EnvVar("BOOTSYNC_REGIOND_CLUSTER_NAME", "cluster.name"),
    EnvVar("BOOTSYNC_REGIOND_CLUSTER_URL", "cluster.url"),
    EnvVar("BOOTSYNC_REGIOND_CLUSTER_HEARTBEAT_SECONDS", "cluster.heartbeat_seconds", "integer"),
    EnvVar("BOOTSYNC_REGIOND_CLUSTER_LEASE_SECONDS", "cluster.lease_seconds", "integer"),
)
"""The ``[cluster]`` keys' variables (etc/regiond.toml names them in that section)."""
DATABASE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


def _check_database_url(text: str) -> None:
    """``sqlite:///<absolute path>`` or ``postgresql://user@host/db``; "" is the default file."""
    if text and not text.startswith(DATABASE_SCHEMES):
        scheme = text.partition(":")[0] if ":" in text else text[:20]  # never echo a password
        raise ValueError(
            f"must be sqlite:///<absolute path> or postgresql://user@host/db, got {scheme!r}..."
        )


def _check_keyring(text: str) -> None:
    if text == "":
        return
    path = check_absolute_path(text)
    if not path.is_file():
        raise ValueError(f"no such file {show(text)}")


def _check_proxy(text: str) -> None:
    if text:
        check_http_url(text)
