"""OAuth PLAINTEXT keys: both clients' headers parse, keys check in full, bad keys get 401."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from common.trust.keyrings import SigningKey
from region.api.auth import (
    Credentials,
    OAuthHeaderError,
    auth_middleware,
    current_user,
    parse_oauth_header,
)
from region.db import users as repo_users
from region.db.connection import open_db
from region.db.users import ApiKey
from tests.integration.region.api_harness import (
    API_HASH,
    Region,
    build_app,
    oauth_header,
    running_region,
)

Events = list[MutableMapping[str, Any]]
LIBMAAS = (
    'OAuth realm="OAuth", oauth_nonce="49526209943234508511795627110", '
    'oauth_timestamp="1795627110", oauth_version="1.0", '
    'oauth_signature_method="PLAINTEXT", oauth_consumer_key="ck", oauth_token="tk", '
    'oauth_signature="%26ts"'
)
MAASCLI = (
    'OAuth oauth_nonce="81722943", oauth_timestamp="1795627110", oauth_version="1.0", '
    'oauth_signature_method="PLAINTEXT", oauth_consumer_key="ck", oauth_token="tk", '
    'oauth_signature="%26ts"'
)


class TestParse:
    """parse_oauth_header."""

    @pytest.mark.parametrize("header", [LIBMAAS, MAASCLI])
    def test_both_client_forms_give_the_key(self, header: str) -> None:
        """With or without realm, the three parts come out percent-decoded."""
        assert parse_oauth_header(header) == Credentials("ck", "tk", "ts")

    def test_percent_encoded_values_are_decoded(self) -> None:
        """Every value is percent-decoded, not only the signature."""
        header = MAASCLI.replace('"ck"', '"c%6B"').replace("%26ts", "%26t%73")
        assert parse_oauth_header(header) == Credentials("ck", "tk", "ts")

    @pytest.mark.parametrize(
        ("header", "reason"),
        [
            ("Basic dXNlcjpwdw==", "not an OAuth header"),
            (LIBMAAS.replace("PLAINTEXT", "HMAC-SHA1"), "unsupported signature method"),
            (LIBMAAS.replace(', oauth_token="tk"', ""), "missing oauth_token"),
            (LIBMAAS.replace("%26ts", "ts"), "signature is not"),
            (LIBMAAS.replace("%26ts", "cs%26ts"), "signature is not"),
            ("OAuth oauth_token=tk", "malformed"),
            ('OAuth realm="OAuth" oauth_token="tk"', "malformed"),
        ],
    )
    def test_unusable_headers_say_why(self, header: str, reason: str) -> None:
        """Other schemes, other methods, missing parts and a wrong signature shape are refused."""
        with pytest.raises(OAuthHeaderError, match=reason):
            parse_oauth_header(header)


class TestTokens:
    """repo_users tokens on a real database."""

    async def test_new_keys_have_maas_lengths_and_only_the_full_key_matches(
        self, tmp_path: Path
    ) -> None:
        """18/18/32 alphanumerics; a wrong part in any position finds no user."""
        async with open_db(tmp_path / "r.db") as db:
            user = await repo_users.create_user(db, "bob")
            key = ApiKey(*await repo_users.create_token(db, user.id))
            other = ApiKey(*await repo_users.create_token(db, user.id))
            assert re.fullmatch(r"[A-Za-z0-9]{18}:[A-Za-z0-9]{18}:[A-Za-z0-9]{32}", str(key))
            assert key != other
            assert await repo_users.user_for_token(db, *vars(key).values()) == user
            assert await repo_users.user_for_token(db, *vars(other).values()) == user
            wrong = [
                (other.consumer_key, key.token_key, key.token_secret),
                (key.consumer_key, other.token_key, key.token_secret),
                (key.consumer_key, key.token_key, other.token_secret),
                (key.consumer_key, key.token_key, ""),
            ]
            for parts in wrong:
                assert await repo_users.user_for_token(db, *parts) is None

    async def test_deleting_a_user_deletes_their_keys(self, tmp_path: Path) -> None:
        """api_tokens cascade with their user."""
        async with open_db(tmp_path / "r.db") as db:
            user = await repo_users.create_user(db, "bob")
            key = await repo_users.create_token(db, user.id)
            async with db.write() as conn:
                await conn.execute("DELETE FROM users WHERE id = ?", (user.id,))
            assert await repo_users.user_for_token(db, *key) is None


class TestOverHttp:
    """The middleware and whoami on a running app."""

    @pytest.mark.parametrize("style", ["libmaas", "maascli"])
    async def test_whoami_answers_for_both_header_forms(
        self, api_region: Region, style: str
    ) -> None:
        """A valid key, signed either way, is the admin user."""
        resp = await api_region.call("GET", "/users/", query={"op": "whoami"}, style=style)  # type: ignore[arg-type]
        assert resp.status == 200
        assert resp.headers["X-MAAS-API-Hash"] == API_HASH
        assert await resp.json() == {
            "username": "admin",
            "email": "admin@example.invalid",
            "is_superuser": True,
            "is_local": True,
            "resource_uri": "/MAAS/api/2.0/users/admin/",
        }

    async def test_whoami_of_a_plain_user_is_not_superuser(self, api_region: Region) -> None:
        """is_superuser follows the admin flag."""
        resp = await api_region.call("GET", "/users/", query={"op": "whoami"}, key=api_region.user)
        assert (await resp.json())["is_superuser"] is False

    async def test_missing_and_wrong_keys_get_401_and_a_log_without_the_secret(
        self, api_region: Region, log_events: Events
    ) -> None:
        """No header and a wrong secret are 401 with a challenge; the log never holds secrets."""
        wrong = ApiKey(api_region.admin.consumer_key, api_region.admin.token_key, "x" * 32)
        missing = await api_region.call("GET", "/users/", query={"op": "whoami"}, key=None)
        bad = await api_region.call("GET", "/users/", query={"op": "whoami"}, key=wrong)
        for resp in (missing, bad):
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == 'OAuth realm="OAuth"'
        failures = [e for e in log_events if e["event"] == "auth_failed"]
        assert [e["reason"] for e in failures] == ["missing", "unknown_key"]
        assert failures[1]["consumer_key"] == api_region.admin.consumer_key[:6]
        assert api_region.admin.token_secret not in repr(log_events)
        assert "x" * 32 not in repr(log_events)

    async def test_garbage_header_is_401(self, api_region: Region) -> None:
        """An Authorization header that is not OAuth PLAINTEXT is a 401, not a 500."""
        resp = await api_region.call(
            "GET",
            "/users/",
            query={"op": "whoami"},
            key=None,
            headers={"Authorization": 'OAuth oauth_token="unterminated'},
        )
        assert resp.status == 401


async def test_anonymous_routes_pass_through_without_a_user(
    region_key: SigningKey, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    """A route that never asks for a user answers with or without a (bad) key."""

    async def anonymous(request: web.Request) -> web.Response:
        return web.Response(text="anon" if current_user(request) is None else "user")

    async with running_region(tmp_path, region_key, aiohttp_client) as running:
        app = build_app(running.ctx)
        app.router.add_get("/MAAS/images-stream/x", anonymous)
        client = await aiohttp_client(app)
        plain = await client.get("/MAAS/images-stream/x")
        bad = await client.get("/MAAS/images-stream/x", headers={"Authorization": MAASCLI})
        good = await client.get(
            "/MAAS/images-stream/x",
            headers={"Authorization": oauth_header(running.user, realm=False)},
        )
        assert [await r.text() for r in (plain, bad, good)] == ["anon", "anon", "user"]
        assert auth_middleware in app.middlewares
