"""The operating systems and releases the region holds, as MAAS offers them in its settings.

MAAS lets ``default_osystem``, ``default_distro_series``,
``commissioning_distro_series`` and ``default_min_hwe_kernel`` take only what
its images provide (its choices; ``'---'`` alone when there is nothing), and
after an import sets the default and commissioning releases, if never set, to
the Ubuntu LTS with the longest support it holds complete
(``set_global_default_releases``). :func:`held_releases` reads what the region
holds; :func:`setting_choices` and :func:`set_default_releases` follow MAAS.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.ops.logging import get_logger
from region.db import config as repo_config
from region.db import resources as repo_resources
from region.db.connection import Database
from region.db.resources import SYNCED, ResourceRow, SetRow

log = get_logger("importer")

NO_CHOICE = "---"  # MAAS's placeholder when no image provides a choice
COMMISSIONING_OS = "ubuntu"  # MAAS commissions with Ubuntu only
_ROOTS = frozenset({"squashfs", "root-image.gz", "root-tgz", "root-txz", "root-tbz"})


@dataclass(frozen=True)
class HeldRelease:
    """One OS release the region holds complete (any architecture)."""

    osystem: str
    release: str
    title: str
    support_eol: str | None
    commissionable: bool  # a synced Ubuntu set with kernel, initrd and root image
    kernels: frozenset[str]  # the subarches its images name: ga-24.04, hwe-24.04, ...

    @property
    def lts(self) -> bool:
        """An Ubuntu LTS with a known end of support (MAAS's commissioning candidates)."""
        return (
            self.osystem == "ubuntu" and self.title.endswith("LTS") and self.support_eol is not None
        )


def _os_release(resource: ResourceRow) -> tuple[str, str]:
    os_name, slash, release = resource.name.partition("/")
    return (os_name, release) if slash else ("custom", resource.name)


def _commissionable(resource: ResourceRow, sets: list[SetRow]) -> bool:
    if resource.rtype != SYNCED:
        return False
    for held in sets:
        types = {f.filetype for f in held.files}
        if {"boot-kernel", "boot-initrd"} <= types and types & _ROOTS:
            return True
    return False


async def held_releases(db: Database) -> list[HeldRelease]:
    """Every OS release with a complete set (bootloaders aside), by OS then release."""
    grouped: dict[tuple[str, str], list[tuple[ResourceRow, list[SetRow]]]] = {}
    for resource, sets in await repo_resources.complete_sets(db):
        if resource.bootloader_type is None:
            grouped.setdefault(_os_release(resource), []).append((resource, sets))
    held = []
    for (os_name, release), members in sorted(grouped.items()):
        extras = [r.extra for r, _sets in members]
        kernels = {r.architecture.partition("/")[2] for r, _sets in members}
        held.append(
            HeldRelease(
                osystem=os_name,
                release=release,
                title=next((str(e["release_title"]) for e in extras if e.get("release_title")), ""),
                support_eol=next(
                    (str(e["support_eol"]) for e in extras if e.get("support_eol")), None
                ),
                commissionable=any(_commissionable(r, s) for r, s in members),
                kernels=frozenset(k for k in kernels if k and k != "generic"),
            )
        )
    return held


async def setting_choices(db: Database, name: str) -> list[str]:
    """The values MAAS would offer for the setting ``name`` now (``['---']`` for none)."""
    held = await held_releases(db)
    choices: list[str]
    if name == "default_osystem":
        choices = sorted({r.osystem for r in held})
    elif name == "default_distro_series":
        osystem = await repo_config.get_config(db, "default_osystem")
        choices = sorted(r.release for r in held if r.osystem == osystem)
    elif name == "commissioning_osystem":
        return [COMMISSIONING_OS]
    elif name == "commissioning_distro_series":
        ubuntu = sorted(
            (r for r in held if r.osystem == COMMISSIONING_OS and r.commissionable),
            key=lambda r: (r.title, r.release),
        )
        choices = [r.release for r in ubuntu]
        current = await repo_config.get_config(db, name)
        if choices and current and current not in choices:
            choices.insert(0, current)  # MAAS lists it as "(No image available)"
    elif name == "default_min_hwe_kernel":
        series = await repo_config.get_config(db, "commissioning_distro_series")
        kernels = {
            k
            for r in held
            if (r.osystem, r.release) == (COMMISSIONING_OS, series)
            for k in r.kernels
        }
        return ["", *sorted(kernels)]
    else:
        raise KeyError(name)
    return choices or [NO_CHOICE]


def newest_lts(held: list[HeldRelease]) -> HeldRelease | None:
    """The commissionable Ubuntu LTS with the longest support, or None."""
    candidates = [r for r in held if r.lts and r.commissionable]
    return max(candidates, key=lambda r: (r.support_eol or "", r.release), default=None)


async def set_default_releases(db: Database) -> dict[str, str]:
    """MAAS's ``set_global_default_releases``: fill unset release settings; what was set.

    The commissioning and the default release, each with its OS, take the
    newest LTS held when never set; a setting an operator chose is kept.
    """
    pick = newest_lts(await held_releases(db))
    if pick is None:
        return {}
    changed: dict[str, str] = {}
    for os_key, series_key in (
        ("commissioning_osystem", "commissioning_distro_series"),
        ("default_osystem", "default_distro_series"),
    ):
        if await repo_config.set_config_unless_set(db, {series_key: pick.release}):
            await repo_config.set_config(db, os_key, pick.osystem)
            changed |= {os_key: pick.osystem, series_key: pick.release}
    if changed:
        log.info("default_releases_set", **changed)
    return changed
