"""Run-time settings changed through the API (``maas set-config``), stored as JSON.

Only the keys in :data:`DEFAULTS` exist; a key never set reads as its default.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from region.db.connection import Database

DEFAULT_RELEASE = "noble"  # the latest Ubuntu LTS, MAAS's default and commissioning release
DEFAULTS: dict[str, Any] = {
    "boot_images_auto_import": True,
    "http_proxy": None,
    "enable_http_proxy": True,
    "boot_images_no_proxy": False,
    "maas_name": socket.gethostname(),
    "default_osystem": "ubuntu",
    "default_distro_series": DEFAULT_RELEASE,
    "commissioning_osystem": "ubuntu",
    "commissioning_distro_series": DEFAULT_RELEASE,
    "default_min_hwe_kernel": "",
    "boot_images_import_interval_minutes": 60,  # the config file's interval when never set
}


def _check_name(name: str) -> None:
    if name not in DEFAULTS:
        raise KeyError(f"unknown config name {name!r}; known: {', '.join(sorted(DEFAULTS))}")


async def get_config(db: Database, name: str) -> Any:
    """The value of ``name`` (its default if never set); KeyError for an unknown name."""
    _check_name(name)
    async with (
        db.read() as conn,
        conn.execute("SELECT value FROM config WHERE name = ?", (name,)) as cur,
    ):
        row = await cur.fetchone()
    return DEFAULTS[name] if row is None else json.loads(row["value"])


async def is_config_set(db: Database, name: str) -> bool:
    """True once ``name`` has been written (even with its default value)."""
    _check_name(name)
    async with (
        db.read() as conn,
        conn.execute("SELECT 1 FROM config WHERE name = ?", (name,)) as cur,
    ):
        return await cur.fetchone() is not None


async def get_config_or(db: Database, name: str, fallback: Any) -> Any:
    """The value of ``name`` if it was ever set, else ``fallback`` (not the default)."""
    _check_name(name)
    async with (
        db.read() as conn,
        conn.execute("SELECT value FROM config WHERE name = ?", (name,)) as cur,
    ):
        row = await cur.fetchone()
    return fallback if row is None else json.loads(row["value"])


async def set_config(db: Database, name: str, value: Any) -> None:
    """Store ``value`` (anything JSON can hold) under ``name``; KeyError for an unknown name."""
    _check_name(name)
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO config (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, json.dumps(value)),
        )


async def set_config_unless_set(db: Database, values: dict[str, Any]) -> dict[str, Any]:
    """Store each of ``values`` whose name was never set, in one transaction; those stored."""
    for name in values:
        _check_name(name)
    stored: dict[str, Any] = {}
    async with db.write() as conn:
        for name, value in values.items():
            cur = await conn.execute(
                "INSERT INTO config (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, json.dumps(value)),
            )
            if cur.rowcount:
                stored[name] = value
    return stored
