"""The ``[server]`` and ``[metrics]`` tables both daemons read, in one place.

Each daemon keeps its own defaults for where it listens; the rest (shutdown
grace, the slow-client guards, where /metrics is served and its token) means
the same on both.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.ops.connlimit import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CLIENT_CONNECTIONS,
    MAX_CLIENT_CONNECTIONS,
    MAX_HEADER_TIMEOUT_S,
)
from common.ops.metrics_access import read_token
from common.ops.tomlconfig import Table, check_host_port

DEFAULT_SHUTDOWN_GRACE_S = 5
MAX_SHUTDOWN_GRACE_S = 600


@dataclass(frozen=True)
class ServerSettings:
    """What a daemon's web server is configured with."""

    listen: str
    shutdown_grace_s: int
    header_timeout_s: int
    max_client_connections: int
    metrics_listen: str
    metrics_token: str


def read_server(server: Table, metrics: Table, *, default_listen: str) -> ServerSettings:
    """Read the shared keys of ``[server]`` and ``[metrics]``; problems are recorded by key.

    Reads the metrics token file (blocking: call it before the event loop runs).
    """
    listen = server.string("listen", default_listen, check=check_host_port)
    shutdown_grace_s = server.integer(
        "shutdown_grace_s", DEFAULT_SHUTDOWN_GRACE_S, minimum=0, maximum=MAX_SHUTDOWN_GRACE_S
    )
    header_timeout_s = server.integer(
        "header_timeout_s", DEFAULT_HEADER_TIMEOUT_S, minimum=1, maximum=MAX_HEADER_TIMEOUT_S
    )
    max_client_connections = server.integer(
        "max_client_connections",
        DEFAULT_MAX_CLIENT_CONNECTIONS,
        minimum=0,
        maximum=MAX_CLIENT_CONNECTIONS,
    )
    metrics_listen = metrics.string("listen", "", check=_check_optional_host_port)
    if metrics_listen and metrics_listen == listen:
        metrics.problem(
            "listen", "must differ from server.listen (empty: /metrics on the main port)"
        )
    token_file = metrics.string("token_file", "", check=_check_token_file)
    return ServerSettings(
        listen=listen,
        shutdown_grace_s=shutdown_grace_s,
        header_timeout_s=header_timeout_s,
        max_client_connections=max_client_connections,
        metrics_listen=metrics_listen,
        metrics_token=_token(token_file),
    )


def _token(token_file: str) -> str:
    """The metrics token, "" when none is set or the file is bad (already recorded)."""
    try:
        return read_token(token_file) if token_file else ""
    except ValueError:
        return ""


def _check_optional_host_port(text: str) -> None:
    if text:
        check_host_port(text)


def _check_token_file(text: str) -> None:
    if text:
        read_token(text)
