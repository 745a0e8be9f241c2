"""docs/log-events.md lists exactly the log events the code can emit, with their fields.

The events are found by reading the source (an AST scan of every
``<logger>.debug/info/warning/error/exception/critical("event_name", ...)`` call
in common/, region/ and rack/, including ``(log.info if ok else log.warning)(...)``),
so a new, renamed or removed event, or a new literal field, fails here until
the catalogue says what it means.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from common.ops.metrics import OBSERVED_EVENTS
from common.ops.sdnotify import STATUS_EVENTS

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "region", "rack")
CATALOGUE = REPO / "docs" / "log-events.md"
LEVELS = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "error": "error",
    "exception": "error",
    "critical": "critical",
}
EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*")
HEADER = re.compile(r"^\|\s*event\s*\|\s*level\s*\|\s*when\s*\|\s*fields\s*\|$")
ROW = re.compile(r"^\|\s*`([a-z][a-z0-9_]*)`\s*\|(.*)\|\s*$")


@dataclass
class Emitted:
    """Where the code emits one event, at which levels, with which literal fields."""

    places: list[str] = field(default_factory=list)
    levels: set[str] = field(default_factory=set)
    fields: set[str] = field(default_factory=set)


@dataclass
class Documented:
    """One catalogue row."""

    levels: set[str]
    fields: set[str]


def _levels_of(func: ast.expr) -> list[str] | None:
    """The log levels a call's function stands for, or None if it is no log call."""
    if isinstance(func, ast.Attribute) and func.attr in LEVELS:
        return [LEVELS[func.attr]]
    if isinstance(func, ast.IfExp):
        body, orelse = _levels_of(func.body), _levels_of(func.orelse)
        if body is not None and orelse is not None:
            return body + orelse
    return None


# Functions that log on their caller's behalf, with the event name the caller passes
# as ``event=``: name → (where its own log call is, the level and fields it logs).
RELAYS = {"retrying": ("common/transfer/retry.py", "warning", {"attempt", "delay_s", "error"})}


def _relayed(node: ast.Call) -> str | None:
    """The literal ``event=`` a call to a relay passes, or None."""
    name = node.func.attr if isinstance(node.func, ast.Attribute) else ast.unparse(node.func)
    if name not in RELAYS:
        return None
    for keyword in node.keywords:
        if keyword.arg == "event" and isinstance(keyword.value, ast.Constant):
            return str(keyword.value.value)
    return None


def _receiver(func: ast.expr) -> str:
    return ast.unparse(func.value) if isinstance(func, ast.Attribute) else ast.unparse(func)


def scan_source() -> tuple[dict[str, Emitted], list[str]]:
    """Every event name the code can emit, and calls whose event name is not a literal."""
    events: dict[str, Emitted] = defaultdict(Emitted)
    dynamic: list[str] = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            relay_home = str(path.relative_to(REPO)) in {r[0] for r in RELAYS.values()}
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                relayed = _relayed(node)
                if relayed is not None:
                    _, level, fields = RELAYS[ast.unparse(node.func).rsplit(".", 1)[-1]]
                    emitted = events[relayed]
                    emitted.places.append(f"{path.relative_to(REPO)}:{node.lineno}")
                    emitted.levels.add(level)
                    emitted.fields.update(fields)
                    continue
                if not node.args:
                    continue
                levels = _levels_of(node.func)
                if levels is None:
                    continue
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    if EVENT_NAME.fullmatch(first.value):
                        emitted = events[first.value]
                        emitted.places.append(where)
                        emitted.levels.update(levels)
                        emitted.fields.update(k.arg for k in node.keywords if k.arg)
                elif relay_home and ast.unparse(first) == "event":
                    continue  # the relay's own call: its callers' events are scanned above
                elif "log" in _receiver(node.func):
                    dynamic.append(f"{where}: {ast.unparse(first)}")
    return dict(events), dynamic


def read_catalogue() -> dict[str, Documented]:
    """The rows of the catalogue's tables: | `event` | levels | when | `field`, `field` |."""
    rows: dict[str, Documented] = {}
    in_table = False
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        if HEADER.match(line):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        match = ROW.match(line)
        if not in_table or match is None:
            continue
        cells = [c.strip() for c in match.group(2).split("|")]
        assert len(cells) == 3, f"catalogue row needs 4 cells: {line}"
        assert match.group(1) not in rows, f"{match.group(1)} is listed twice"
        rows[match.group(1)] = Documented(
            levels=set(re.findall(r"[a-z]+", cells[0])),
            fields=set(re.findall(r"`([a-z_][a-z0-9_]*)`", cells[2])),
        )
    return rows


def test_the_scan_finds_events_in_every_call_shape() -> None:
    """Plain calls, bound loggers and conditional levels are all seen by the scan."""
    events, _ = scan_source()
    assert events["import_finished"].levels == {"info", "warning"}  # (log.info if ... )(...)
    assert "download_failed" in events  # flog.warning(...) on a bound logger
    assert "pull_finished" in events
    assert len(events) > 100
    assert events["download_retrying"].levels == {"warning"}  # retrying(..., event=...)


def test_every_event_name_is_a_literal() -> None:
    """A logger is never called with a computed event name (the catalogue could not see it)."""
    _, dynamic = scan_source()
    assert dynamic == []


def test_every_emitted_event_is_in_the_catalogue() -> None:
    """An event the code emits but docs/log-events.md lacks fails, naming where it is emitted."""
    events, _ = scan_source()
    documented = read_catalogue()
    missing = {name: e.places for name, e in sorted(events.items()) if name not in documented}
    assert missing == {}, "add these to docs/log-events.md"


def test_every_catalogued_event_is_still_emitted() -> None:
    """A catalogue row for an event no code emits any more fails."""
    events, _ = scan_source()
    stale = sorted(set(read_catalogue()) - set(events))
    assert stale == [], "remove these from docs/log-events.md"


def test_the_catalogue_lists_each_event_s_levels_and_literal_fields() -> None:
    """Every level an event is emitted at and every keyword field it is given are documented."""
    events, _ = scan_source()
    documented = read_catalogue()
    wrong: dict[str, str] = {}
    for name, emitted in sorted(events.items()):
        row = documented.get(name)
        if row is None:
            continue
        if emitted.levels - row.levels:
            wrong[name] = f"levels {sorted(emitted.levels - row.levels)} missing"
        elif emitted.fields - row.fields:
            wrong[name] = f"fields {sorted(emitted.fields - row.fields)} missing"
    assert wrong == {}


def test_the_events_metrics_and_status_read_are_emitted() -> None:
    """Renaming an event the metrics or the systemd status line depend on fails here."""
    events, _ = scan_source()
    assert sorted((OBSERVED_EVENTS | STATUS_EVENTS) - set(events)) == []
