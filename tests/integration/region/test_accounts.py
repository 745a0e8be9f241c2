"""version/ lists MAAS 3.4's capabilities, and ``authenticate-api`` is true: a password gets a key."""

from __future__ import annotations

from region.api.http import API_ROOT
from region.db import users as repo_users
from region.db import web_auth
from tests.integration.region.rack_harness import RackRegion

AUTHENTICATE = "/MAAS/accounts/authenticate/"
MAAS_34_CAPABILITIES = [
    "networks-management",
    "static-ipaddresses",
    "ipv6-deployment-ubuntu",
    "devices-management",
    "storage-deployment-ubuntu",
    "network-deployment-ubuntu",
    "bridging-interface-ubuntu",
    "bridging-automatic-ubuntu",
    "authenticate-api",
]


async def with_password(region: RackRegion, username: str, password: str) -> int:
    """The id of ``username`` (created if new) after giving it ``password``."""
    user = await repo_users.get_user(region.ctx.db, username)
    if user is None:
        user = await repo_users.create_user(region.ctx.db, username)
    await web_auth.set_password(region.ctx.db, user.id, password)
    return user.id


async def test_version_lists_maas_34_capabilities_in_order(region: RackRegion) -> None:
    """The nine capabilities of MAAS 3.4's API_CAPABILITIES_LIST, in MAAS's order."""
    body = await (await region.client.get(f"{API_ROOT}/version/")).json()
    assert body["capabilities"] == MAAS_34_CAPABILITIES


async def test_a_password_gets_the_users_first_key_as_maas_answers(region: RackRegion) -> None:
    """POST username/password (and libmaas's consumer): 200 with the user's earliest key."""
    await with_password(region, "admin", "s3cret-pass")
    resp = await region.client.post(
        AUTHENTICATE,
        data={"username": "admin", "password": "s3cret-pass", "consumer": "me@host"},
    )
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"consumer_key", "name", "token_key", "token_secret"}
    assert (body["consumer_key"], body["token_key"], body["token_secret"]) == (
        region.admin.consumer_key,
        region.admin.token_key,
        region.admin.token_secret,
    )
    whoami = await region.client.get(
        f"{API_ROOT}/users/",
        params={"op": "whoami"},
        headers={
            "Authorization": (
                'OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", '
                f'oauth_consumer_key="{body["consumer_key"]}", '
                f'oauth_token="{body["token_key"]}", '
                f'oauth_signature="&{body["token_secret"]}", oauth_nonce="1", '
                'oauth_timestamp="1"'
            )
        },
    )
    assert (await whoami.json())["username"] == "admin"


async def test_a_user_without_a_key_gets_a_new_one(region: RackRegion) -> None:
    """No key yet: one is made, and the next call answers the same one."""
    await with_password(region, "bob", "bobs-password")
    first = await (
        await region.client.post(
            AUTHENTICATE, data={"username": "bob", "password": "bobs-password"}
        )
    ).json()
    again = await (
        await region.client.post(
            AUTHENTICATE, data={"username": "bob", "password": "bobs-password"}
        )
    ).json()
    assert first == again
    user = await repo_users.user_for_token(
        region.ctx.db, first["consumer_key"], first["token_key"], first["token_secret"]
    )
    assert user is not None
    assert user.username == "bob"


async def test_a_wrong_password_or_a_get_is_refused(region: RackRegion) -> None:
    """Wrong password or unknown user: 403 (MAAS's); GET: 405; too many failures: 429."""
    await with_password(region, "admin", "s3cret-pass")
    wrong = await region.client.post(AUTHENTICATE, data={"username": "admin", "password": "nope"})
    nobody = await region.client.post(AUTHENTICATE, data={"username": "zed", "password": "x"})
    get = await region.client.get(AUTHENTICATE)
    assert (wrong.status, nobody.status, get.status) == (403, 403, 405)
    for _ in range(5):
        await region.client.post(AUTHENTICATE, data={"username": "admin", "password": "nope"})
    limited = await region.client.post(
        AUTHENTICATE, data={"username": "admin", "password": "s3cret-pass"}
    )
    assert limited.status == 429
    assert "Retry-After" in limited.headers
