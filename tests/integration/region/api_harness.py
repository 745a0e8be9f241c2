"""A real region API app for tests: a real database (SQLite and PostgreSQL), real middlewares, the clients' exact wire format.

``running_region`` builds the app with the routes of boot_sources, selections,
maas_config and users, an admin key and a plain user key, and starts it with
pytest-aiohttp's ``aiohttp_client``. The catalogue and importer are small
recorders (the API only schedules refreshes; nothing here imports).

``tests/conftest.py`` loads this module as a plugin, so every test can ask for
``region_key`` (one region signing key per module) and ``api_region`` (a started
:class:`Region` on a fresh database, once per engine).

Requests are sent the way the two real clients (python-libmaas, the maas CLI) send them:
libmaas signs with ``realm="OAuth"`` and always sends multipart with base64
parts (an empty body is ``--B\\r\\n\\r\\n--B--``); the maas CLI signs without a
realm and sends the same multipart, or no body at all when it has no fields.
"""

from __future__ import annotations

import base64
import io
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from common.storage.blobstore import BlobStore
from common.storage.snapshot import SnapshotPublisher
from common.trust.keyrings import SigningKey
from region.api import boot_sources, maas_config, selections, users
from region.api.auth import auth_middleware
from region.api.http import API_ROOT, api_hash_middleware, maas_errors
from region.api.registry import add_routes
from region.config import RegionConfig
from region.context import CTX, RegionContext
from region.db import users as repo_users
from region.db.connection import open_db
from region.db.users import ApiKey
from tests.fakes.postgres import PostgresServer

API_HASH = "0123456789abcdef0123456789abcdef01234567"
Style = Literal["libmaas", "maascli", "form"]
Field = tuple[str, str | bytes] | tuple[str, bytes, str]  # (name, value[, filename])


@dataclass
class RecordingCatalogue:
    """CatalogueControl that records every refresh request."""

    reasons: list[str] = field(default_factory=list)

    def schedule_refresh(self, *, reason: str) -> None:
        """Remember ``reason``."""
        self.reasons.append(reason)


@dataclass
class IdleImporter:
    """ImportControl that never imports (these tests do not start imports)."""

    started: list[str] = field(default_factory=list)

    def start(self, *, reason: str, force: bool = False) -> bool:
        """Record the request; report that nothing started."""
        self.started.append(reason)
        return False

    def is_importing(self) -> bool:
        """Never importing."""
        return False

    async def wait_idle(self) -> None:
        """Never importing: nothing to wait for."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def republish(self, *, reason: str) -> bool:
        """Nothing to publish."""
        return False


@contextmanager
def region_signing_key() -> Iterator[SigningKey]:
    """A real region key in a short /tmp home (gpg-agent socket paths must stay short)."""
    home = Path(tempfile.mkdtemp(prefix="bsk-", dir="/tmp"))
    try:
        with SigningKey.create(
            home / "k", name="Test Region", email="region@example.invalid"
        ) as key:
            yield key
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def region_key() -> Iterator[SigningKey]:
    """One region signing key for the module (making one costs a gpg run)."""
    with region_signing_key() as key:
        yield key


def oauth_header(key: ApiKey, *, realm: bool) -> str:
    """The Authorization header libmaas (``realm=True``) or the maas CLI sends."""
    params = [
        ("oauth_nonce", str(secrets.randbelow(10**29))),
        ("oauth_timestamp", str(int(time.time()))),
        ("oauth_version", "1.0"),
        ("oauth_signature_method", "PLAINTEXT"),
        ("oauth_consumer_key", key.consumer_key),
        ("oauth_token", key.token_key),
        ("oauth_signature", "&" + key.token_secret),
    ]
    rendered = [f'{name}="{quote(value, safe="")}"' for name, value in params]
    return "OAuth " + ", ".join(([] if not realm else ['realm="OAuth"']) + rendered)


def maas_multipart(fields: Sequence[Field]) -> tuple[bytes, str]:
    """Body and Content-Type exactly as libmaas/maascli encode multipart (base64 parts)."""
    boundary = f"==============={secrets.randbelow(10**19):019d}=="
    if not fields:
        return (
            f"--{boundary}\r\n\r\n--{boundary}--".encode(),
            f'multipart/form-data; boundary="{boundary}"',
        )
    chunks: list[bytes] = []
    for item in fields:
        name, value = item[0], item[1]
        data = value.encode() if isinstance(value, str) else value
        if len(item) == 3:
            disposition = f'form-data; name="{name}"; filename="{item[2]}"'
            ctype = "application/octet-stream"
        else:
            disposition = f'form-data; name="{name}"'
            ctype = (
                'text/plain; charset="utf-8"'
                if isinstance(value, str)
                else "application/octet-stream"
            )
        chunks.append(
            f"--{boundary}\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: {disposition}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {ctype}\r\n\r\n".encode()
            + base64.encodebytes(data)
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/form-data; boundary="{boundary}"'


@dataclass
class Region:
    """A started region API: its client, context, recorders and two keys."""

    client: TestClient[Any, Any]
    ctx: RegionContext
    catalogue: RecordingCatalogue
    admin: ApiKey
    user: ApiKey

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: ApiKey | Literal["admin"] | None = "admin",
        style: Style = "maascli",
        fields: Sequence[Field] = (),
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Send a request under ``API_ROOT`` the way ``style`` does; ``key=None`` is anonymous."""
        api_key = self.admin if key == "admin" else key
        sent: dict[str, str] = dict(headers or {})
        if api_key is not None:
            sent["Authorization"] = oauth_header(api_key, realm=style == "libmaas")
        body: bytes | None = None
        if method in ("POST", "PUT") or (method == "DELETE" and style == "libmaas"):
            if style == "form":
                body = "&".join(
                    f"{quote(n)}={quote(v if isinstance(v, str) else v.decode())}"
                    for n, v, *_ in fields
                ).encode()
                sent["Content-Type"] = "application/x-www-form-urlencoded"
            elif fields or style == "libmaas":
                body, sent["Content-Type"] = maas_multipart(fields)
        # aiohttp warns about large raw bytes bodies; a file object streams them.
        data = io.BytesIO(body) if body is not None and len(body) > 1 << 16 else body
        return await self.client.request(
            method, API_ROOT + path, params=query, data=data, headers=sent
        )


async def make_key(ctx: RegionContext, username: str, *, admin: bool) -> ApiKey:
    """A user with a fresh API key."""
    user = await repo_users.create_user(
        ctx.db, username, email=f"{username}@example.invalid", is_admin=admin
    )
    return ApiKey(*await repo_users.create_token(ctx.db, user.id))


def build_app(ctx: RegionContext) -> web.Application:
    """The API app: middlewares as the daemon stacks them, and this helper's routes."""
    app = web.Application(middlewares=[api_hash_middleware(API_HASH), maas_errors, auth_middleware])
    app[CTX] = ctx
    add_routes(
        app, [*boot_sources.HANDLERS, *selections.HANDLERS, *maas_config.HANDLERS, *users.HANDLERS]
    )
    return app


@asynccontextmanager
async def running_region(
    tmp_path: Path,
    key: SigningKey,
    aiohttp_client: AiohttpClient,
    *,
    database: Path | str | None = None,
) -> AsyncIterator[Region]:
    """Open a database (``database``, else a SQLite file in ``tmp_path``) and serve the API."""
    catalogue = RecordingCatalogue()
    store = BlobStore(tmp_path / "blobs")
    target = tmp_path / "region.db" if database is None else database
    async with open_db(target) as db, aiohttp.ClientSession() as session:
        ctx = RegionContext(
            data_dir=tmp_path,
            db=db,
            session=session,
            store=store,
            publisher=SnapshotPublisher(tmp_path / "stream", store),
            region_key=key,
            importer=IdleImporter(),
            catalogue=catalogue,
            config=RegionConfig(data_dir=tmp_path),
        )
        admin = await make_key(ctx, "admin", admin=True)
        user = await make_key(ctx, "alice", admin=False)
        client = await aiohttp_client(build_app(ctx))
        yield Region(client=client, ctx=ctx, catalogue=catalogue, admin=admin, user=user)


@pytest.fixture(params=["sqlite", "postgresql"])
async def api_region(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    region_key: SigningKey,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Region]:
    """A running region API on a fresh database, once on each engine (same answers on both)."""
    database: str | None = None
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        database = await server.new_database()
    async with running_region(tmp_path, region_key, aiohttp_client, database=database) as running:
        yield running
