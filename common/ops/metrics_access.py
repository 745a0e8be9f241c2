"""Who may read ``/metrics``: where it is served and the bearer token it may require.

``/metrics`` tells whoever reads it the daemon's state; on the region it lists
every rack's ``system_id`` and hostname. By default it is served on the main
port to anyone, as Prometheus exporters usually are. ``[metrics]`` in either
daemon's TOML file narrows that:

* ``listen = "127.0.0.1:9240"`` serves it only there, on a listener of its own
  (:func:`metrics_app`); the main port then has no ``/metrics``;
* ``token_file = "/etc/bootsync/metrics-token"`` requires
  ``Authorization: Bearer <token>`` wherever it is served (401 otherwise);
  Prometheus sends it with ``authorization: {credentials_file: ...}``.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from aiohttp import web

from common.ops import metrics
from common.ops.tomlconfig import show

METRICS_PATH = "/metrics"
METRICS_TOKEN = web.AppKey("metrics_token", str)
_SCHEME = "bearer"


def add_metrics_route(app: web.Application, *, token: str) -> None:
    """Serve ``GET /metrics`` on ``app``, requiring ``token`` as a Bearer token if not ""."""
    app[METRICS_TOKEN] = token
    app.router.add_get(METRICS_PATH, guarded_metrics)


def metrics_app(live: metrics.LiveMetrics | None, *, token: str) -> web.Application:
    """An application serving only ``/metrics`` (for its own listener), with the main
    app's ``live`` scrape-time values."""
    app = web.Application()
    if live is not None:
        app[metrics.LIVE_METRICS] = live
    add_metrics_route(app, token=token)
    return app


async def guarded_metrics(request: web.Request) -> web.StreamResponse:
    """``GET /metrics`` after the token check (a plain-text 401 without the token)."""
    token = request.app.get(METRICS_TOKEN, "")
    if token and not token_matches(request.headers.get("Authorization"), token):
        raise web.HTTPUnauthorized(
            text="Authorization Required: send the metrics token as a Bearer token.",
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="bootsync metrics"'},
        )
    return await metrics.metrics_handler(request)


def token_matches(header: str | None, token: str) -> bool:
    """True when ``header`` is ``Bearer <token>`` (compared in constant time)."""
    if header is None:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != _SCHEME:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def read_token(text: str) -> str:
    """The token in the file at the absolute path ``text`` (blocking), stripped.

    Raises ValueError completing ``metrics.token_file: ...`` when it cannot be read,
    is empty or holds more than one word.
    """
    path = Path(text)
    if not path.is_absolute():
        raise ValueError(f"must be an absolute path, got {show(text)}")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read {path}: {reason}") from exc
    if not token or any(ch.isspace() for ch in token):
        raise ValueError(f"{path} must hold one word, the token")
    return token
