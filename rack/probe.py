"""``bootsync-rackd --check-config --check-region``: can this rack register with its regions?

Each configured region URL is probed once (:meth:`RegionClient.probe`), without
registering anything; every problem the rack would meet at its first
registration (nothing listening, TLS, a wrong URL, not a bootsync region, a
refused secret) is printed before the daemon is ever started.
"""

from __future__ import annotations

import asyncio
import sys

from common.transfer.http import make_session
from rack.app import USER_AGENT
from rack.config import RackConfig
from rack.region_client import RegionClient


async def region_problems(config: RackConfig) -> dict[str, str | None]:
    """Region URL → why the rack could not register there (None: it could)."""
    async with make_session(user_agent=USER_AGENT) as session:
        client = RegionClient(session, config.region_urls, config.secret)
        problems = await asyncio.gather(*(client.probe(url) for url in config.region_urls))
    return dict(zip(config.region_urls, problems, strict=True))


def check_region(prog: str, config: RackConfig) -> int:
    """Probe every region URL (runs its own event loop): 0, or 2 after printing each problem."""
    found = asyncio.run(region_problems(config))
    for url, problem in found.items():
        if problem is None:
            print(f"{url}: ok (a bootsync region that accepts this rack's secret)")
        else:
            print(
                f"{prog}: region {url} will not register this rack:\n  {problem}", file=sys.stderr
            )
    return 2 if any(found.values()) else 0
