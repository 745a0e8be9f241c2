"""What a mirror refuses to hold: items and documents no server could serve from it.

A validly signed upstream may still name a path with a 300-byte segment, a
4,500-byte path, a hidden name, or a path inside the mirror's own
``.bootsync/`` store (which would overwrite a blob). The mirror lays items out
at their stream paths, so such an item is refused by the served-name rule
(:func:`simplestreams.served_path_problem`), with its whole product version; a
products document whose own path breaks the rule is refused whole. The rest is
mirrored; each refusal names the document and the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from common.mirror.selection import MirrorSelection
from common.mirror.tree import STATE_DIR
from common.ops.logging import get_logger
from simplestreams import IndexEntry, ProductList, served_path_problem
from simplestreams.screen import Refusal, screen_products

log = get_logger("mirror")


def document_path_problem(path: str | None) -> str | None:
    """Why the mirror could not publish a products document at ``path``, or None."""
    if path is None:
        return "the index gives no path"
    problem = served_path_problem(path)
    if problem is None and path.split("/", 1)[0] == STATE_DIR:
        problem = f"path is inside the mirror's own {STATE_DIR}/ store"
    return problem


def screen_selection(
    selection: MirrorSelection,
    *,
    index_url: str,
    documents: Mapping[str, str],
    max_item_size: int,
    read_refusals: Sequence[Refusal] = (),
) -> tuple[MirrorSelection, tuple[Refusal, ...]]:
    """``selection`` without what the mirror could not hold, and each refusal (logged).

    ``documents`` maps a content id to the URL its products document was read
    from (refusals name it; the index path otherwise); ``index_url`` names the
    index for a refused document path. ``read_refusals``: what reading the
    stream already left out (``Stream.refusals``), logged and returned first.
    """
    entries: dict[str, IndexEntry] = {}
    products: dict[str, ProductList] = {}
    refusals: list[Refusal] = list(read_refusals)
    for content_id, product_list in selection.products.items():
        entry = selection.entries[content_id]
        problem = document_path_problem(entry.path)
        if problem is not None:
            refusals.append(Refusal(f"{index_url}: index[{content_id}].path", problem))
            continue
        screened = screen_products(
            product_list,
            source=documents.get(content_id) or entry.path or content_id,
            max_item_size=max_item_size,
        )
        refusals += screened.refusals
        if screened.products.products:
            entries[content_id] = entry
            products[content_id] = screened.products
    for refusal in refusals:
        log.warning("mirror_item_refused", location=refusal.location, reason=refusal.reason)
    if len(refusals) == len(read_refusals):
        return selection, tuple(refusals)
    kept = dataclasses.replace(selection, entries=entries, products=products)
    return kept, tuple(refusals)
