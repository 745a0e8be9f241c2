"""Every id in an API path that is not a stored object's id is a 404, never a 500."""

from __future__ import annotations

import pytest

from region.api.handlers import HANDLERS
from region.api.http import API_ROOT
from region.db import sources as repo_sources
from tests.integration.region.api_harness import oauth_header
from tests.integration.region.rack_harness import RackRegion

# Out of SQLite's integer range (2**63 and beyond), negative, or not plain ASCII digits.
BAD_IDS = (
    "99999999999999999999999",
    "9223372036854775808",
    "-1",
    "+1",
    "1_0",
    " 1",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: int() takes it, a path id must not
    "1e3",
    "0x10",
)
# String ids (a rack's system_id) are looked up as text, not parsed.
TEXT_PARAMS = frozenset({"system_id"})
ROUTES = [
    (spec.path, param, action.method, action.op)
    for spec in HANDLERS
    for param in spec.params
    if param not in TEXT_PARAMS
    for action in spec.actions
]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_every_path_id_out_of_range_or_malformed_is_a_404(
    region: RackRegion, bad: str
) -> None:
    """Each integer path parameter of each action answers 404 to an id no row can have."""
    db = region.ctx.db
    source = await repo_sources.create_source(db, url="http://m.test/", keyring_data=b"k")
    headers = {"Authorization": oauth_header(region.admin, realm=False)}
    answers = {}
    for path, param, method, op in ROUTES:
        url = path.replace(f"{{{param}}}", bad)
        for other in ("boot_source_id", "id", "file_id"):  # the rest name a real source
            url = url.replace(f"{{{other}}}", str(source.id))
        resp = await region.client.request(
            method, f"{API_ROOT}/{url}", params={"op": op} if op else None, headers=headers
        )
        answers[method, path, op, param] = resp.status
    assert ROUTES
    assert {k: v for k, v in answers.items() if v != 404} == {}
