"""Hostile edits of a signed sample stream: still validly signed, but saying bad things.

Each helper rewrites documents of a stream written by ``write_sample_stream``
under its ``root`` and signs them again with the upstream's key, the way a
compromised or replaying mirror would serve them: the signatures verify, only
the content lies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.trust.keyrings import SigningKey

META = Path("streams") / "v1"
V3 = "com.ubuntu.maas:stable:v3:download"

Doc = dict[str, Any]


def dump(doc: Doc) -> bytes:
    """The bytes the sample stream writes for ``doc`` (sorted keys, indented)."""
    return json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"


def read_products(root: Path, content_id: str = V3) -> Doc:
    """The unsigned products document ``content_id`` of the stream under ``root``."""
    return dict(json.loads((root / META / f"{content_id}.json").read_bytes()))


def write_products(root: Path, key: SigningKey, doc: Doc) -> None:
    """Write ``doc`` as its .json and signed .sjson, and list its products in the index.

    The index keeps its own ``updated``; it is signed again because its entry
    names the products.
    """
    content_id = doc["content_id"]
    meta = root / META
    (meta / f"{content_id}.json").write_bytes(dump(doc))
    (meta / f"{content_id}.sjson").write_bytes(key.clearsign(dump(doc)))
    index = json.loads((meta / "index.json").read_bytes())
    index["index"][content_id]["products"] = sorted(doc["products"])
    (meta / "index.json").write_bytes(dump(index))
    for entry in index["index"].values():
        entry["path"] = entry["path"].removesuffix(".json") + ".sjson"
    (meta / "index.sjson").write_bytes(key.clearsign(dump(index)))


def edit_products(
    root: Path, key: SigningKey, edit: Callable[[Doc], None], content_id: str = V3
) -> None:
    """Apply ``edit`` to products document ``content_id`` in place and sign it again."""
    doc = read_products(root, content_id)
    edit(doc)
    write_products(root, key, doc)


def newest_version(doc: Doc, product: str) -> Doc:
    """The newest version (by name) of ``product`` in ``doc``, to edit in place."""
    versions = doc["products"][product]["versions"]
    return dict(versions[max(versions)])


def copy_products_document(source: Path, target: Path, content_id: str = V3) -> None:
    """Serve ``source``'s signed products document (both forms) from ``target``'s stream.

    ``target``'s index is left as it is: a mix-and-match of a current index with
    an older, validly signed products document.
    """
    for suffix in (".json", ".sjson"):
        name = f"{content_id}{suffix}"
        (target / META / name).write_bytes((source / META / name).read_bytes())
