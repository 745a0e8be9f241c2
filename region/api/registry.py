"""The API's one declaration: handlers, their actions, and what is derived from them.

Each API module declares its MAAS handlers next to its handler code, as
:class:`HandlerSpec`\\ s whose :class:`Action`\\ s name the (method, op), the
coroutine that answers it, its doc and its parameters; region/api/handlers.py
lists them all. From that list come the aiohttp routes (:func:`add_routes`,
one :func:`region.api.http.dispatch` per path), the describe/ document
(:func:`describe_document`) and the ``X-MAAS-API-Hash`` over it (:func:`api_hash`).

The document's shape is MAAS's: ``{doc, hash, resources: [{name, anon, auth}],
handlers}``; resources and actions sorted by name; each handler ``{name, doc,
path, params, uri, actions}`` with ``uri`` built from the request's scheme and
Host. Action docs list their parameters as ``:param name:`` lines after the
first paragraph, which the maas CLI ≥ 3.6 requires before it accepts
``key=value`` arguments.

:func:`registry_problems` finds routes under the API root that bypass the
declaration (added with ``app.router`` directly), so the tests catch them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from region.api.http import API_ROOT, Handler, dispatch, dispatch_table

DESCRIBE_PATH = f"{API_ROOT}/describe/"
# Routes under the API root that are not MAAS handlers (MAAS serves describe as a view).
UNDESCRIBED = frozenset({DESCRIBE_PATH})
CRUD_NAMES = {"GET": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Param:
    """A request parameter an action takes (not a URI placeholder)."""

    name: str
    text: str
    required: bool = False
    type: str = "String"


@dataclass(frozen=True)
class Action:
    """One (method, op) of a handler and the coroutine answering it.

    ``op`` None is the CRUD action of ``method``. ``params`` lists every request
    parameter the coroutine reads (URI placeholders are positional and not listed).
    """

    method: str
    op: str | None
    handler: Handler = field(repr=False)
    summary: str
    params: tuple[Param, ...] = ()
    details: str = ""

    @property
    def name(self) -> str:
        """The op, or read/create/update/delete for a CRUD action."""
        return self.op or CRUD_NAMES[self.method]

    @property
    def doc(self) -> str:
        """Summary, details, then ``:param``/``:type`` lines (MAAS's layout)."""
        parts = [self.summary]
        if self.details:
            parts.append(self.details)
        if self.params:
            parts.append(
                "\n".join(
                    f":param {p.name}: {'Required' if p.required else 'Optional'}. {p.text}\n"
                    f":type {p.name}: {p.type}"
                    for p in self.params
                )
            )
        return "\n\n".join(parts) + "\n"


@dataclass(frozen=True)
class HandlerSpec:
    """A MAAS handler: class name, path below the API root, doc and actions.

    ``anon`` handlers are served to anonymous callers (``resources[].anon``);
    ``hidden`` ones are routed but left out of the document, as MAAS hides its
    upload handler. Action names must be unique: clients make one command or
    method of each. Raises ValueError otherwise.
    """

    name: str
    path: str
    doc: str
    actions: tuple[Action, ...]
    anon: bool = False
    hidden: bool = False

    def __post_init__(self) -> None:
        names = [a.name for a in self.actions]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"{self.name}: action names used twice: {', '.join(twice)}")

    def with_actions(self, *actions: Action) -> HandlerSpec:
        """This handler with ``actions`` added (an action another module answers)."""
        return replace(self, actions=(*self.actions, *actions))

    @property
    def full_path(self) -> str:
        """The absolute path template, e.g. ``/MAAS/api/2.0/boot-sources/{id}/``."""
        return f"{API_ROOT}/{self.path}"

    @property
    def params(self) -> list[str]:
        """The URI placeholders, in order."""
        return _PLACEHOLDER.findall(self.path)

    def routes(self) -> dict[tuple[str, str | None], Handler]:
        """The (method, op) → coroutine table :func:`region.api.http.dispatch` takes."""
        return {(a.method, a.op): a.handler for a in self.actions}

    def document(self, base_url: str) -> dict[str, Any]:
        """This handler as describe renders it; ``base_url`` is ``scheme://host``."""
        return {
            "name": self.name,
            "doc": self.doc,
            "path": self.full_path,
            "params": self.params,
            "uri": base_url + self.full_path,
            "actions": [
                {
                    "name": a.name,
                    "method": a.method,
                    "op": a.op,
                    "restful": a.op is None,
                    "doc": a.doc,
                }
                for a in sorted(self.actions, key=lambda a: a.name)
            ],
        }


def add_routes(app: web.Application, specs: Iterable[HandlerSpec]) -> None:
    """Route each handler's path to one dispatcher over its actions."""
    for spec in specs:
        app.router.add_route("*", spec.full_path, dispatch(spec.routes()))


def describe_document(specs: Iterable[HandlerSpec], base_url: str, api_hash: str) -> dict[str, Any]:
    """The whole describe document for ``specs`` as seen from ``base_url``."""
    shown = sorted((s for s in specs if not s.hidden), key=lambda s: s.name)
    resources = []
    for spec in shown:
        handler = spec.document(base_url)
        resources.append(
            {
                "name": spec.name,
                "anon": handler if spec.anon else None,
                "auth": None if spec.anon else handler,
            }
        )
    handlers = [r["anon"] for r in resources if r["anon"] is not None] + [
        r["auth"] for r in resources if r["auth"] is not None
    ]
    return {"doc": "MAAS API", "hash": api_hash, "resources": resources, "handlers": handlers}


def api_hash(specs: Iterable[HandlerSpec]) -> str:
    """A digest of the API description, sent as ``X-MAAS-API-Hash`` and describe's ``hash``.

    As in MAAS it covers every handler, action and parameter (not the host in the
    URIs), so the maas CLI warns when its cached description is out of date.
    """
    document = describe_document(specs, base_url="", api_hash="")
    canonical = json.dumps(document, sort_keys=True).encode()
    return hashlib.sha1(canonical, usedforsecurity=False).hexdigest()


def described_actions(specs: Iterable[HandlerSpec]) -> set[tuple[str, str, str | None]]:
    """(absolute path template, method, op) of every action in ``specs``, hidden included."""
    return {(s.full_path, a.method, a.op) for s in specs for a in s.actions}


def routed_actions(app: web.Application) -> set[tuple[str, str, str | None]]:
    """(path template, method, op) of every route under the API root, describe aside."""
    found: set[tuple[str, str, str | None]] = set()
    for route in app.router.routes():
        if route.resource is None:
            continue
        path = route.resource.canonical
        if not path.startswith(API_ROOT + "/") or path in UNDESCRIBED:
            continue
        table = dispatch_table(route.handler)
        if table is None:
            found.add((path, route.method, None))
        else:
            found.update((path, method, op) for method, op in table)
    return found


def registry_problems(app: web.Application, specs: Iterable[HandlerSpec]) -> list[str]:
    """What is routed but not declared, or declared but not routed (empty when in step)."""
    specs = list(specs)
    routed, described = routed_actions(app), described_actions(specs)
    problems = [
        f"routed but not in the registry: {m} {p} op={o}"
        for p, m, o in sorted(routed - described, key=str)
    ]
    problems += [
        f"in the registry but not routed: {m} {p} op={o}"
        for p, m, o in sorted(described - routed, key=str)
    ]
    names = [s.name for s in specs]
    problems += [f"handler name used twice: {n}" for n in sorted(set(names)) if names.count(n) > 1]
    return problems
