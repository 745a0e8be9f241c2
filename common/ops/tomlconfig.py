"""Reading TOML configuration files and reporting every problem at once.

A daemon reads its file through a :class:`ConfigReader`: typed readers take a
key and a default, record a problem (``import.interval_minutes: must be a whole
number ≥ 1, got 0``) instead of raising, and :meth:`ConfigReader.finish` raises
one :class:`~common.errors.ConfigError` listing them all, unknown keys included.
Command-line values that win over the file go through :class:`Flags`, which
checks them the same way and names the flag in its problems. The value checkers
(:func:`check_http_url`, :func:`check_absolute_path`) raise ValueError with a
message that completes ``<key>: ...``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from common.errors import ConfigError

_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")

C = TypeVar("C", bound=str)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse the TOML file at ``path`` (blocking).

    Raises ConfigError naming the file when it cannot be read, is not UTF-8 or is
    not valid TOML (with tomllib's line and column).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def show(value: object) -> str:
    """``value`` written as TOML would write it, for messages (``"60"``, ``true``, ``1.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(show(item) for item in value) + "]"
    return repr(value)


class Table:
    """One TOML table: typed readers that record problems under dotted key names."""

    def __init__(
        self, data: Mapping[str, Any], *, prefix: str, problems: list[str], tables: list[Table]
    ) -> None:
        self._data = data
        self._prefix = prefix
        self._problems = problems
        self._tables = tables
        self._read: set[str] = set()
        tables.append(self)

    def key(self, name: str) -> str:
        """The dotted name of ``name`` in this table, as messages show it."""
        return f"{self._prefix}{name}"

    def problem(self, name: str, message: str) -> None:
        """Record ``<dotted key>: <message>``."""
        self._problems.append(f"{self.key(name)}: {message}")

    def _get(self, name: str) -> tuple[bool, Any]:
        self._read.add(name)
        return (name in self._data, self._data.get(name))

    def table(self, name: str) -> Table:
        """The sub-table ``name`` (empty when absent or not a table)."""
        present, value = self._get(name)
        if present and not isinstance(value, dict):
            self.problem(name, f"must be a table, got {show(value)}")
            value = {}
        return Table(
            value or {}, prefix=self.key(name) + ".", problems=self._problems, tables=self._tables
        )

    def string(
        self,
        name: str,
        default: str,
        *,
        choices: Sequence[str] = (),
        check: Callable[[str], object] | None = None,
    ) -> str:
        """A string value; ``check`` raises ValueError whose text becomes the problem."""
        present, value = self._get(name)
        if not present:
            return default
        if not isinstance(value, str):
            self.problem(name, f"must be a string, got {show(value)}")
            return default
        if choices and value not in choices:
            self.problem(name, f"must be one of {', '.join(choices)}; got {show(value)}")
            return default
        if check is not None:
            try:
                check(value)
            except ValueError as exc:
                self.problem(name, str(exc))
                return default
        return value

    def choice(self, name: str, default: C, choices: Sequence[C]) -> C:
        """One of ``choices`` (typed as they are: a tuple of Literal strings gives that Literal)."""
        value = self.string(name, default, choices=choices)
        return next((choice for choice in choices if choice == value), default)

    def strings(
        self,
        name: str,
        default: tuple[str, ...],
        *,
        what: str = "strings",
        non_empty: bool = False,
        check: Callable[[str], object] | None = None,
    ) -> tuple[str, ...]:
        """A list of strings, each passing ``check``; problems name the item (``urls[1]``).

        ``what`` names the items in the message for a value that is no list
        (``must be a non-empty list of region URLs, got 5``). Any problem gives ``default``.
        """
        present, value = self._get(name)
        if not present:
            return default
        if not isinstance(value, list) or (non_empty and not value):
            wanted = f"a non-empty list of {what}" if non_empty else f"a list of {what}"
            self.problem(name, f"must be {wanted}, got {show(value)}")
            return default
        mark = len(self._problems)
        for n, item in enumerate(value):
            if not isinstance(item, str):
                self.problem(f"{name}[{n}]", f"must be a string, got {show(item)}")
                continue
            if check is not None:
                try:
                    check(item)
                except ValueError as exc:
                    self.problem(f"{name}[{n}]", str(exc))
        return default if len(self._problems) > mark else tuple(value)

    def integer(
        self,
        name: str,
        default: int,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        rule: str | None = None,
    ) -> int:
        """A whole number within [minimum, maximum] (either bound optional).

        ``rule`` replaces the problem's ``must be a whole number …`` with a reason of
        its own; ``, got <value>`` follows either.
        """
        present, value = self._get(name)
        if not present:
            return default
        if rule is not None:
            wanted = rule
        elif minimum is not None and maximum is not None:
            wanted = f"must be a whole number from {minimum} to {maximum}"
        elif minimum is not None:
            wanted = f"must be a whole number ≥ {minimum}"
        elif maximum is not None:
            wanted = f"must be a whole number ≤ {maximum}"
        else:
            wanted = "must be a whole number"
        # TOML booleans are Python bools, which are ints: refuse them explicitly.
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
        ):
            self.problem(name, f"{wanted}, got {show(value)}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """``true`` or ``false`` (TOML booleans only, never strings or numbers)."""
        present, value = self._get(name)
        if not present:
            return default
        if not isinstance(value, bool):
            self.problem(name, f"must be true or false, got {show(value)}")
            return default
        return value

    def unknown_keys(self) -> list[str]:
        """Keys present in the file that no reader asked for."""
        return [name for name in self._data if name not in self._read]


class ConfigReader(Table):
    """The top-level table of a configuration document and the problems found in it.

    ``origins`` maps dotted keys whose value came from elsewhere (an environment
    variable) to that variable; their problems name it:
    ``log.level (from $BOOTSYNC_REGIOND_LOG_LEVEL): ...``.
    """

    def __init__(
        self, data: Mapping[str, Any], *, source: str, origins: Mapping[str, str] | None = None
    ) -> None:
        self.source = source
        self.problems: list[str] = []
        self._origins = dict(origins or {})
        self._all_tables: list[Table] = []
        super().__init__(data, prefix="", problems=self.problems, tables=self._all_tables)

    def finish(self) -> None:
        """Record unknown keys, then raise ConfigError listing every problem, if any."""
        for table in self._all_tables:
            for name in table.unknown_keys():
                table.problem(name, "unknown key")
        for n, problem in enumerate(self.problems):
            key, sep, rest = problem.partition(": ")
            origin = self._origins.get(key.split("[", 1)[0])  # urls[1] came from urls
            if sep and origin:
                self.problems[n] = f"{key} (from ${origin}): {rest}"
        if self.problems:
            listing = "\n".join(f"  {problem}" for problem in self.problems)
            raise ConfigError(f"invalid configuration in {self.source}:\n{listing}")


class Flags:
    """Command-line values that win over the file's, checked as the file's are.

    Each reader takes the flag, its value (None or empty: not given) and the
    value to keep without it (the file's); a problem names the flag (``--listen:
    must be HOST:PORT ...``) and keeps that value. :meth:`finish` raises one
    ConfigError listing them all.
    """

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, flag: str, message: str) -> None:
        """Record ``<flag>: <message>``."""
        self.problems.append(f"{flag}: {message}")

    def string(
        self,
        flag: str,
        value: str | None,
        default: str,
        *,
        check: Callable[[str], object] | None = None,
    ) -> str:
        """``value`` if given and ``check`` (ValueError: a problem) accepts it, else ``default``."""
        if value is None:
            return default
        if check is not None:
            try:
                check(value)
            except ValueError as exc:
                self.problem(flag, str(exc))
                return default
        return value

    def strings(
        self,
        flag: str,
        values: Sequence[str],
        default: tuple[str, ...],
        *,
        check: Callable[[str], object] | None = None,
    ) -> tuple[str, ...]:
        """A repeatable flag: ``values`` if any were given and all pass ``check``."""
        if not values:
            return default
        mark = len(self.problems)
        for value in values:
            self.string(flag, value, "", check=check)
        return default if len(self.problems) > mark else tuple(values)

    def path(self, flag: str, value: Path | None, default: Path) -> Path:
        """``value`` made absolute (relative to the working directory) if given."""
        if value is None:
            return default
        if "\x00" in str(value):
            self.problem(flag, f"not a path: {show(str(value))}")
            return default
        return value.absolute()

    def finish(self) -> None:
        """Raise ConfigError listing every problem, if any."""
        if self.problems:
            listing = "\n".join(f"  {problem}" for problem in self.problems)
            raise ConfigError(f"invalid configuration:\n{listing}")


def check_http_url(text: str) -> str:
    """Return ``text`` if it is an absolute http(s) URL with a valid host; else ValueError."""
    if not text or text != text.strip() or any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise ValueError(f"must be an http:// or https:// URL, got {show(text)}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"must be an http:// or https:// URL, got {show(text)}") from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _valid_host(host) or port == 0:
        raise ValueError(f"must be an http:// or https:// URL, got {show(text)}")
    return text


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.fullmatch(host))
    return True


def check_absolute_path(text: str) -> Path:
    """``text`` as a Path if it is absolute; else ValueError."""
    if not text or "\x00" in text or not Path(text).is_absolute():
        raise ValueError(f"must be an absolute path, got {show(text)}")
    return Path(text)


def check_host_port(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 as ``[::]:5240``) into host and port 1-65535; else ValueError."""
    wrong = ValueError(f"must be HOST:PORT (IPv6 as [ADDR]:PORT), got {show(text)}")
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise wrong
        try:
            if ipaddress.ip_address(host).version != 6:
                raise wrong
        except ValueError:
            raise wrong from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise wrong
        if not _valid_host(host):
            raise wrong
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a whole number from 1 to 65535, got {show(text)}")
    return host, int(port_text)
