"""Sample streams as the reliability trials see them: their items, paced and counted.

A trial kills a process "after N bytes": :func:`pace` makes the fake upstream
send every item in small pieces so that a transfer lasts long enough for N to
fall inside it, and :func:`item_bytes` counts what it served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.upstream import FakeUpstream

META = Path("streams") / "v1"


@dataclass(frozen=True)
class Item:
    """One file a stream lists."""

    path: str
    sha256: str
    size: int


def stream_items(root: Path, *, prefixes: tuple[str, ...] = ("",)) -> dict[str, Item]:
    """path → Item of every file the unsigned products documents under ``root`` list.

    Only paths starting with one of ``prefixes`` (default: all).
    """
    found: dict[str, Item] = {}
    for doc_path in sorted((root / META).glob("*.json")):
        if doc_path.name == "index.json":
            continue
        doc = json.loads(doc_path.read_bytes())
        for product in doc["products"].values():
            for version in product["versions"].values():
                for item in version["items"].values():
                    path = item.get("path")
                    if path and path.startswith(prefixes):
                        found[path] = Item(path, item["sha256"], item["size"])
    return found


def pace(upstream: FakeUpstream, items: dict[str, Item], *, piece: int, every_s: float) -> None:
    """Serve every item ``piece`` bytes at a time, one piece every ``every_s`` seconds."""
    for path in items:
        upstream.drip(path, nbytes=piece, every_s=every_s)


def served_items(upstream: FakeUpstream) -> dict[str, int]:
    """Item path (no leading '/') → body bytes served so far; metadata left out."""
    return {
        path.lstrip("/"): n
        for path, n in upstream.served.items()
        if not path.startswith("/streams/")
    }


def item_bytes(upstream: FakeUpstream, since: dict[str, int]) -> int:
    """Item bytes served since the ``since`` snapshot of :func:`served_items`."""
    now = served_items(upstream)
    return sum(n - since.get(path, 0) for path, n in now.items())


def refetched(
    before: dict[str, int], after: dict[str, int], items: dict[str, Item], held: set[str]
) -> dict[str, str]:
    """Files fetched again between two :func:`served_items` snapshots that should not have been.

    A file whose blob was ``held`` (complete) before must not be served again;
    any other file at most once more in full (a resume sends only the rest).
    path → why, for each offence.
    """
    problems = {}
    for path, item in items.items():
        more = after.get(path, 0) - before.get(path, 0)
        if item.sha256 in held and more > 0:
            problems[path] = f"complete before, {more} bytes served again"
        elif more > item.size:
            problems[path] = f"{more} bytes served for a {item.size}-byte file"
    return problems
