"""Profiles of the maas-CLI grammar: the store, and ``login``, ``logout``, ``list``, ``refresh``.

A profile is a name for one server: its API URL (ending in ``/api/2.0/``), its
API key (or none: anonymous) and the describe document cached at login, from
which ``bootsync PROFILE ...`` builds its commands without a network call.
Profiles live in ``$XDG_CONFIG_HOME/bootsync/profiles.json`` (default
``~/.config``), written atomically with mode 0600 in a 0700 directory, because
the file holds API keys.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import BootsyncError, ConfigError, ConnectError

# `bootsync --help` registers these commands: maascli_http (http.client) is imported
# by the code that uses it (tests/unit/cli/test_startup_imports.py).
if TYPE_CHECKING:
    from common.cli.maascli_http import ApiClient, Credentials

PROFILES_FILE = "profiles.json"
_FORMAT_VERSION = 1


class LoginError(BootsyncError):
    """The server refused the key, or gave no usable API description."""


@dataclass(frozen=True)
class Profile:
    """One stored server: name, API URL, key (None: anonymous), cached describe document."""

    name: str
    url: str
    credentials: Credentials | None
    description: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        creds = self.credentials
        return {
            "name": self.name,
            "url": self.url,
            "credentials": None
            if creds is None
            else [creds.consumer_key, creds.token_key, creds.token_secret],
            "description": self.description,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Profile:
        """A profile from its stored form; KeyError/TypeError/ValueError when malformed."""
        from common.cli.maascli_http import Credentials  # noqa: PLC0415 - start-up stays cheap

        creds = data["credentials"]
        return cls(
            name=str(data["name"]),
            url=str(data["url"]),
            credentials=None if creds is None else Credentials(*map(str, creds)),
            description=dict(data["description"]),
        )


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/bootsync``, or ``~/.config/bootsync``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "bootsync"


class ProfileStore:
    """The profiles file. Reads and writes are synchronous: call them off the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls) -> ProfileStore:
        """The store in the user's config directory."""
        return cls(config_dir() / PROFILES_FILE)

    def load(self) -> dict[str, Profile]:
        """Every profile by name (none if the file is missing); ConfigError if unreadable."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {name: Profile.from_json(data) for name, data in raw["profiles"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{self.path}: unreadable profiles file ({exc}); fix or remove it and log in again"
            ) from exc

    def get(self, name: str) -> Profile | None:
        """The profile called ``name``, or None."""
        return self.load().get(name)

    def save(self, profile: Profile) -> None:
        """Add or replace ``profile``."""
        profiles = self.load()
        profiles[profile.name] = profile
        self._write(profiles)

    def delete(self, name: str) -> bool:
        """Remove ``name``; False if there was no such profile."""
        profiles = self.load()
        if profiles.pop(name, None) is None:
            return False
        self._write(profiles)
        return True

    def _write(self, profiles: Mapping[str, Profile]) -> None:
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        data = {
            "version": _FORMAT_VERSION,
            "profiles": {name: p.to_json() for name, p in sorted(profiles.items())},
        }
        from common.storage.atomic import write_atomic  # noqa: PLC0415 - start-up stays cheap

        write_atomic(self.path, json.dumps(data, indent=1).encode("utf-8"), mode=0o600)


def fetch_description(client: ApiClient, url: str) -> dict[str, Any]:
    """``GET <url>describe/`` unsigned; LoginError unless it is a JSON object with resources."""
    from common.cli.maascli_http import media_type  # noqa: PLC0415 - start-up stays cheap

    response = client.request("GET", url + "describe/", signed=False)
    if response.status != 200 or media_type(response.content_type) != "application/json":
        raise LoginError(
            f"{url}describe/ gave no API description: HTTP {response.status} "
            f"{response.reason} ({response.content_type or 'no Content-Type'})"
        )
    try:
        description = response.json()
    except ValueError as exc:
        raise LoginError(f"{url}describe/ is not valid JSON: {exc}") from exc
    if not isinstance(description, dict) or not isinstance(description.get("resources"), list):
        raise LoginError(f"{url}describe/ has no 'resources' list")
    return description


def check_login(
    url: str, credentials: Credentials | None, *, insecure: bool = False
) -> dict[str, Any]:
    """Check the key with ``users/?op=whoami`` and return the describe document.

    Raises LoginError ("login failed: ...") for a rejected key, an unexpected
    answer or an unreachable server.
    """
    from common.cli.maascli_http import ApiClient  # noqa: PLC0415 - start-up stays cheap

    try:
        with ApiClient(url, credentials, insecure=insecure) as client:
            if credentials is not None:
                response = client.request("GET", url + "users/", op="whoami")
                if response.status == 401:
                    raise LoginError(
                        "login failed: the server rejected the API key "
                        f"(HTTP 401 {response.reason})"
                    )
                if response.status != 200:
                    raise LoginError(
                        "login failed: unexpected answer to users/?op=whoami: "
                        f"HTTP {response.status} {response.reason}"
                    )
            return fetch_description(client, url)
    except ConnectError as exc:
        raise LoginError(f"login failed: {exc}") from exc


def register(sub: Any) -> None:
    """Add ``login``, ``logout``, ``list`` and ``refresh`` to the ``bootsync`` parser."""
    p = sub.add_parser(
        "login",
        help="log in to a MAAS-compatible API and store a profile",
        description="Check KEY with users/?op=whoami, fetch the API "
        "description and store it as PROFILE. KEY '-' reads it from stdin; "
        "without KEY you are asked for it (empty: anonymous).",
    )
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("url", metavar="URL", help="e.g. http://region:5240/MAAS/")
    p.add_argument("key", metavar="KEY", nargs="?", help="consumer_key:token_key:token_secret")
    p.add_argument("-k", "--insecure", action="store_true", help="skip TLS certificate checks")
    p.set_defaults(run=run_login)
    p = sub.add_parser("logout", help="forget a profile", description="Delete PROFILE.")
    p.add_argument("profile", metavar="PROFILE")
    p.set_defaults(run=run_logout)
    p = sub.add_parser(
        "list",
        help="list profiles (name, URL, key)",
        description="Print each profile's name, API URL and key.",
    )
    p.set_defaults(run=run_list)
    p = sub.add_parser(
        "refresh",
        help="fetch every profile's API description again",
        description="Fetch the API description of every profile again.",
    )
    p.set_defaults(run=run_refresh)


def _read_key(key: str | None) -> Credentials | None:
    if key == "-":
        key = sys.stdin.readline()
    elif key is None:
        key = (
            getpass.getpass("API key (leave empty for anonymous access): ")
            if sys.stdin.isatty()
            else ""
        )
    if not key.strip():
        return None
    from common.cli.maascli_http import Credentials  # noqa: PLC0415 - start-up stays cheap

    return Credentials.parse(key)


def run_login(args: argparse.Namespace) -> int:
    """``bootsync login PROFILE URL [KEY]``: 0 when stored, 1 when the server says no."""
    reserved: frozenset[str] = getattr(args, "reserved", frozenset())
    if args.profile in reserved or args.profile.startswith("-"):
        print(
            f"bootsync login: error: {args.profile!r} is a bootsync command; "
            "choose another profile name",
            file=sys.stderr,
        )
        return 2
    from common.cli.maascli_http import api_url  # noqa: PLC0415 - start-up stays cheap

    try:
        url = api_url(args.url)
        credentials = _read_key(args.key)
    except ValueError as exc:
        print(f"bootsync login: error: {exc}", file=sys.stderr)
        return 2
    description = check_login(url, credentials, insecure=args.insecure)
    ProfileStore.default().save(
        Profile(name=args.profile, url=url, credentials=credentials, description=description)
    )
    print(f"You are now logged in to the server at {url} with the profile name '{args.profile}'.")
    return 0


def run_logout(args: argparse.Namespace) -> int:
    """``bootsync logout PROFILE``: 1 if there is no such profile."""
    if not ProfileStore.default().delete(args.profile):
        raise ConfigError(f"no profile named {args.profile!r}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """``bootsync list``: ``name url key`` per profile."""
    for profile in ProfileStore.default().load().values():
        print(profile.name, profile.url, profile.credentials or "")
    return 0


def run_refresh(args: argparse.Namespace) -> int:
    """``bootsync refresh``: fetch each description again; 1 if any failed."""
    store = ProfileStore.default()
    failed = 0
    for profile in store.load().values():
        try:
            description = _refetch(profile)
        except (LoginError, ConnectError) as exc:
            print(f"bootsync refresh: {profile.name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        store.save(
            Profile(
                name=profile.name,
                url=profile.url,
                credentials=profile.credentials,
                description=description,
            )
        )
    return 1 if failed else 0


def _refetch(profile: Profile) -> dict[str, Any]:
    from common.cli.maascli_http import ApiClient  # noqa: PLC0415 - start-up stays cheap

    with ApiClient(profile.url, profile.credentials) as client:
        return fetch_description(client, profile.url)
