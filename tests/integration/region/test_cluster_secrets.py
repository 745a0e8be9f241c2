"""The cluster's shared secrets (region/cluster/secrets.py) on SQLite and a real PostgreSQL server.

Each "region" here is a data directory with its own gpg home and rack secret, and
its own handle on the one database; adopting the cluster's secrets must leave every
region signing with one key and holding one rack secret.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from common.errors import KeyringError
from common.trust.keyrings import SigningKey, aload_keyring
from common.trust.signing import verify_clearsigned
from region.app import REGION_KEY_DIR, region_context
from region.cluster.secrets import (
    PEER_TOKEN,
    RACK_SECRET,
    SIGNING_KEY,
    ClusterSecrets,
    adopt_cluster_secrets,
    read_secret,
)
from region.config import RegionConfig
from region.context import CTX
from region.db.connection import open_db
from region.images.publish import KEYRING_NAME
from region.rackhub.secret import load_or_create_secret, replace_secret
from region.rackhub.secret import read_secret as read_rack_secret
from tests.fakes.postgres import PostgresServer
from tests.fakes.waiting import eventually

LogEvents = list[MutableMapping[str, Any]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """A fresh database on each engine: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "cluster.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return await server.new_database()


@contextlib.asynccontextmanager
async def own_key(data_dir: Path) -> AsyncIterator[SigningKey]:
    """The signing key of the region at ``data_dir`` (made if absent); its agent stopped after."""
    key = await SigningKey.aopen_or_create(
        data_dir / REGION_KEY_DIR, name="test region", email="region@test.invalid"
    )
    try:
        yield key
    finally:
        await asyncio.to_thread(key.close)


async def adopt(target: str | Path, data_dir: Path) -> ClusterSecrets:
    """What the region at ``data_dir`` adopts on its own handle of ``target``."""
    async with open_db(target, readers=1) as db, own_key(data_dir) as key:
        adopted = await adopt_cluster_secrets(db, data_dir, key)
        await asyncio.to_thread(adopted.key.close)
        return adopted


def logged(log_events: LogEvents, name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in log_events if e["event"] == name]


async def test_two_regions_sign_with_one_key_and_share_the_rack_secret(
    target: str | Path, tmp_path: Path
) -> None:
    """Two regions on one database end up with one signing key, rack secret and peer token."""
    first = await adopt(target, tmp_path / "a")
    second = await adopt(target, tmp_path / "b")
    assert first.key.fingerprint == second.key.fingerprint
    assert first.rack_secret == second.rack_secret
    assert first.peer_token == second.peer_token
    assert len(first.peer_token) >= 32
    secrets_b = await asyncio.to_thread(read_rack_secret, tmp_path / "b")
    assert secrets_b == await asyncio.to_thread(read_rack_secret, tmp_path / "a")
    assert secrets_b == first.rack_secret
    # What the second region signs verifies against the first one's public key.
    signed = await second.key.aclearsign(b"stream index\n")
    keyring = await aload_keyring(await first.key.aexport_public(armor=True))
    verified = await asyncio.to_thread(verify_clearsigned, signed, keyring)
    assert verified.payload == b"stream index\n"
    assert verified.fingerprint == first.key.fingerprint
    assert first.rack_secret not in repr(first)
    assert first.peer_token not in repr(first)
    await asyncio.to_thread(second.key.close)


async def test_an_existing_regions_key_and_rack_secret_become_the_clusters(
    target: str | Path, tmp_path: Path, log_events: LogEvents
) -> None:
    """A region that ran alone before keeps its key and secret; the next region takes them."""
    old, new = tmp_path / "old", tmp_path / "new"
    async with own_key(old) as original:
        old_fingerprint = original.fingerprint
    old_secret = await asyncio.to_thread(load_or_create_secret, old)
    async with own_key(new) as own:
        new_own_fingerprint = own.fingerprint

    kept = await adopt(target, old)
    assert kept.key.fingerprint == old_fingerprint
    assert kept.rack_secret == old_secret
    assert sorted(e["name"] for e in logged(log_events, "cluster_secret_created")) == sorted(
        [SIGNING_KEY, RACK_SECRET, PEER_TOKEN]
    )
    assert not logged(log_events, "cluster_key_adopted")
    assert not logged(log_events, "rack_secret_adopted")

    taken = await adopt(target, new)
    assert taken.key.fingerprint == old_fingerprint
    assert await asyncio.to_thread(read_rack_secret, new) == old_secret
    [adopted] = logged(log_events, "cluster_key_adopted")
    assert (adopted["fingerprint"], adopted["replaced"]) == (old_fingerprint, new_own_fingerprint)
    assert [e["path"] for e in logged(log_events, "rack_secret_adopted")] == [
        str(new / "rack-secret")
    ]
    assert len(logged(log_events, "cluster_secret_created")) == 3  # the second created none
    # The key it replaced is kept, private, in its gpg home; the home holds one key.
    backup = new / REGION_KEY_DIR / f"replaced-{new_own_fingerprint}.asc"
    assert backup.stat().st_mode & 0o777 == 0o600
    reopened = await asyncio.to_thread(SigningKey.open, new / REGION_KEY_DIR)
    assert reopened.fingerprint == old_fingerprint

    # A restart adopts nothing new.
    again = await adopt(target, new)
    assert again.key.fingerprint == old_fingerprint
    assert len(logged(log_events, "cluster_key_adopted")) == 1
    assert len(logged(log_events, "rack_secret_adopted")) == 1
    async with open_db(target, readers=1) as db:
        assert await read_secret(db, PEER_TOKEN) == again.peer_token
        assert await read_secret(db, "no_such_secret") is None


async def test_regions_started_on_one_postgresql_share_key_secret_and_events(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Two region contexts on one PostgreSQL publish one keyring, one rack secret, one event bus."""
    url = await postgres_server.new_database()
    heard: list[dict[str, Any]] = []

    async def record(fields: Any) -> None:
        heard.append(dict(fields))

    contexts = []
    async with contextlib.AsyncExitStack() as stack:
        for name in ("a", "b"):
            config = RegionConfig(
                data_dir=tmp_path / name,
                database_url=url,
                cluster_name=f"region-{name}",
                cluster_url=f"http://127.0.0.1:1/{name}",
                create_default_source=False,
            )
            app = web.Application()
            await stack.enter_async_context(
                contextlib.asynccontextmanager(region_context)(app, config)
            )
            contexts.append(app[CTX])
        first, second = contexts
        assert first.region_key.fingerprint == second.region_key.fingerprint
        assert first.events is not None
        assert second.events is not None
        second.events.subscribe("blobs_held", record)
        await first.events.publish("blobs_held")
        await eventually(lambda: heard == [{"region": "region-a"}], "region-a's event at region-b")
        for ctx in contexts:
            await ctx.importer.wait_idle()
    keyrings = [(tmp_path / n / KEYRING_NAME).read_bytes() for n in ("a", "b")]
    assert keyrings[0] == keyrings[1]
    secrets = [await asyncio.to_thread(read_rack_secret, tmp_path / n) for n in ("a", "b")]
    assert secrets[0] == secrets[1]


async def test_a_stored_key_without_a_secret_part_is_refused_and_the_home_kept(
    tmp_path: Path,
) -> None:
    """Adopting data with no secret key raises KeyringError and leaves the region's key in place."""
    async with own_key(tmp_path / "a") as key:
        public = await key.aexport_public(armor=True)
        with pytest.raises(KeyringError, match="expected one secret key, found 0"):
            await asyncio.to_thread(key.adopt, public)
        reopened = await asyncio.to_thread(SigningKey.open, tmp_path / "a" / REGION_KEY_DIR)
    assert reopened.fingerprint == key.fingerprint


async def test_a_rack_secret_that_is_no_secret_is_not_written(tmp_path: Path) -> None:
    """replace_secret refuses a short or spaced secret and keeps the file; an equal one is no change."""
    current = await asyncio.to_thread(load_or_create_secret, tmp_path)
    for bad in ("short", "x" * 20 + " " + "y" * 20):
        with pytest.raises(ValueError, match="not a rack secret"):
            await asyncio.to_thread(replace_secret, tmp_path, bad)
    assert not await asyncio.to_thread(replace_secret, tmp_path, current)
    assert await asyncio.to_thread(replace_secret, tmp_path, "z" * 40)
    assert await asyncio.to_thread(read_rack_secret, tmp_path) == "z" * 40
    assert (tmp_path / "rack-secret").stat().st_mode & 0o777 == 0o600
