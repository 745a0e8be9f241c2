"""Which HTTP session reaches a boot source, from the proxy config keys.

``enable_http_proxy`` and ``http_proxy`` set: sources are fetched through the
proxy, except loopback hosts and, with ``boot_images_no_proxy``, every source
(MAAS adds the source hosts to ``no_proxy`` then, and sources are all an
import talks to). Otherwise the region's own session is used (it honours the
process environment's ``http_proxy``/``no_proxy``).
"""

from __future__ import annotations

from types import TracebackType
from urllib.parse import urlsplit

import aiohttp

from common.ops.logging import get_logger
from region.db.config import get_config
from region.db.connection import Database

log = get_logger("proxy")

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class UpstreamSessions:
    """``async with UpstreamSessions(db, session) as s: s.for_url(url)``.

    A proxied session, when needed, lives for the block only.
    """

    def __init__(
        self, db: Database, default: aiohttp.ClientSession, *, fallback_proxy: str = ""
    ) -> None:
        self._db = db
        self._default = default
        self._fallback = fallback_proxy
        self._proxied: aiohttp.ClientSession | None = None
        self.proxy: str | None = None

    async def __aenter__(self) -> UpstreamSessions:
        enabled = await get_config(self._db, "enable_http_proxy")
        proxy = await get_config(self._db, "http_proxy")
        if proxy is None:
            proxy = self._fallback
        bypass = await get_config(self._db, "boot_images_no_proxy")
        if enabled and proxy and not bypass:
            self.proxy = str(proxy)
            self._proxied = aiohttp.ClientSession(
                proxy=self.proxy,
                headers=self._default.headers,
                auto_decompress=False,
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
            log.debug("upstream_proxy_used", proxy=self.proxy)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proxied is not None:
            await self._proxied.close()
            self._proxied = None

    def for_url(self, url: str) -> aiohttp.ClientSession:
        """The session to fetch ``url`` with."""
        if self._proxied is None or urlsplit(url).hostname in _LOOPBACK:
            return self._default
        return self._proxied
