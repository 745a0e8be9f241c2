"""The MAAS view of stream products: image specs and boot-source selections.

A product's flattened fields become an :class:`ImageSpec` by MAAS's rules, and
a :class:`Selection` (os, release, arches, subarches, labels) decides whether
MAAS would import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

WILDCARD = "*"
BOOTLOADER_TYPE = "bootloader-type"


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """What MAAS calls one image: for bootloaders ``release`` is the bootloader type."""

    os: str
    release: str
    arch: str
    subarch: str
    kflavor: str
    label: str
    bootloader_type: str | None = None


def is_bootloader(fields: Mapping[str, str]) -> bool:
    """Tell whether flattened ``fields`` describe a bootloader product."""
    return bool(fields.get(BOOTLOADER_TYPE))


def _spliced_subarch(subarch: str, kflavor: str) -> str:
    # Flavoured kernels get their own subarch so they do not overwrite the
    # generic one on racks: ga-22.04 -> ga-22.04-lowlatency,
    # hwe-16.04-edge -> hwe-16.04-lowlatency-edge.
    if kflavor in ("", "generic") or not subarch.startswith(("ga-", "hwe-")):
        return subarch
    if f"-{kflavor}-" in f"{subarch}-":
        return subarch
    parts = subarch.split("-")
    if parts[-1] == "edge":
        parts.insert(len(parts) - 1, kflavor)
    else:
        parts.append(kflavor)
    return "-".join(parts)


def image_spec_of(fields: Mapping[str, str]) -> ImageSpec:
    """Build the MAAS image spec of a product from its flattened fields.

    ``os`` defaults to ``ubuntu``, ``kflavor`` and ``subarch`` to ``generic``,
    other missing fields to ``""``. A bootloader (``bootloader-type`` set) has
    ``release`` = its bootloader type and subarch ``generic``. A non-generic
    ``kflavor`` on a ``ga-*``/``hwe-*`` subarch is spliced into the subarch.
    """
    os_name = fields.get("os") or "ubuntu"
    kflavor = fields.get("kflavor") or "generic"
    if is_bootloader(fields):
        bootloader_type = fields[BOOTLOADER_TYPE]
        return ImageSpec(
            os=os_name,
            release=bootloader_type,
            arch=fields.get("arch", ""),
            subarch="generic",
            kflavor=kflavor,
            label=fields.get("label", ""),
            bootloader_type=bootloader_type,
        )
    subarch = _spliced_subarch(fields.get("subarch") or "generic", kflavor)
    return ImageSpec(
        os=os_name,
        release=fields.get("release", ""),
        arch=fields.get("arch", ""),
        subarch=subarch,
        kflavor=kflavor,
        label=fields.get("label", ""),
    )


def resource_name(spec: ImageSpec) -> str:
    """Return the MAAS boot-resource name: ``os/release`` (``os/bootloader-type``)."""
    return f"{spec.os}/{spec.release}"


def resource_architecture(spec: ImageSpec) -> str:
    """Return the MAAS boot-resource architecture ``arch/subarch``."""
    return f"{spec.arch}/{spec.subarch}"


@dataclass(frozen=True, slots=True)
class Selection:
    """A MAAS boot-source selection; ``"*"`` is a wildcard in every field.

    Lists given for ``arches``/``subarches``/``labels`` are stored as tuples.
    """

    os: str
    release: str
    arches: tuple[str, ...] = (WILDCARD,)
    subarches: tuple[str, ...] = (WILDCARD,)
    labels: tuple[str, ...] = (WILDCARD,)

    def __post_init__(self) -> None:
        for name in ("arches", "subarches", "labels"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"Selection.{name} must be a sequence of strings, not a string")
            object.__setattr__(self, name, tuple(value))


def _listed(value: str, allowed: tuple[str, ...]) -> bool:
    return WILDCARD in allowed or value in allowed


def selection_matches(selection: Selection, spec: ImageSpec) -> bool:
    """Tell whether ``spec`` passes ``selection`` (MAAS ``image_passes_filter``).

    os and release must be equal or ``*``; arch, subarch and label must each
    be listed or the list must hold ``*``. Comparison is literal, so a
    selection with a blank os matches nothing.
    """
    return (
        selection.os in (WILDCARD, spec.os)
        and selection.release in (WILDCARD, spec.release)
        and _listed(spec.arch, selection.arches)
        and _listed(spec.subarch, selection.subarches)
        and _listed(spec.label, selection.labels)
    )


def matches_any(selections: Iterable[Selection], spec: ImageSpec) -> bool:
    """Tell whether ``spec`` passes at least one selection.

    Like MAAS, an empty selection list means *everything*: callers that want
    "nothing selected, nothing imported" must check for emptiness themselves.
    """
    chosen = tuple(selections)
    return not chosen or any(selection_matches(s, spec) for s in chosen)
