"""What a Save selection changes: the ticks of the images table against the selections.

Pure: :func:`diff_selections` compares the boxes ticked for each os/release row
with the source's selections and says which selections to create, update and
delete so that they match. A row with no tick loses its selection; a selection
whose os or release is ``*`` is not a row and is left alone. ``*`` arches stay
``*`` while every arch offered is ticked; subarches and labels default to ``*``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from region.db.sources import Selection

RowKey = tuple[str, str]  # (os, release)
ANY = ("*",)


@dataclass(frozen=True)
class Wanted:
    """A selection as the form wants it."""

    os: str
    release: str
    arches: tuple[str, ...]
    subarches: tuple[str, ...] = ANY
    labels: tuple[str, ...] = ANY


@dataclass(frozen=True)
class SelectionPlan:
    """The writes that make the selections match the form."""

    create: tuple[Wanted, ...] = ()
    update: tuple[tuple[int, Wanted], ...] = ()
    delete: tuple[Selection, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing changes."""
        return not (self.create or self.update or self.delete)


def _managed(sel: Selection) -> bool:
    return "*" not in (sel.os, sel.release)


def diff_selections(
    current: Collection[Selection],
    ticks: Mapping[RowKey, Collection[str]],
    offered: Mapping[RowKey, Collection[str]],
    subarches: Mapping[RowKey, tuple[str, ...]] | None = None,
) -> SelectionPlan:
    """The plan turning ``current`` into the ticked rows.

    ``ticks``: row → arches ticked; ``offered``: row → arches the source offers
    (the rows the table showed); ``subarches``: row → subarches asked for in the
    advanced options (missing: keep the selection's, or ``*``).
    """
    existing: dict[RowKey, Selection] = {}
    for each in current:
        if _managed(each):
            existing.setdefault((each.os, each.release), each)
    rows = sorted({*offered, *existing, *(k for k, arches in ticks.items() if arches)})
    create: list[Wanted] = []
    update: list[tuple[int, Wanted]] = []
    delete: list[Selection] = []
    for key in rows:
        ticked = set(ticks.get(key, ()))
        sel = existing.get(key)
        if not ticked:
            if sel is not None:
                delete.append(sel)
            continue
        all_offered = set(offered.get(key, ()))
        keep_any = sel is not None and "*" in sel.arches and all_offered and ticked >= all_offered
        arches = ANY if keep_any else tuple(sorted(ticked))
        asked = (subarches or {}).get(key)
        wanted = Wanted(
            os=key[0],
            release=key[1],
            arches=arches,
            subarches=asked or (sel.subarches if sel and sel.subarches else ANY),
            labels=sel.labels if sel and sel.labels else ANY,
        )
        if sel is None:
            create.append(wanted)
        elif (sel.arches, sel.subarches, sel.labels) != (
            wanted.arches,
            wanted.subarches,
            wanted.labels,
        ):
            update.append((sel.id, wanted))
    return SelectionPlan(create=tuple(create), update=tuple(update), delete=tuple(delete))
