"""Bootloaders as MAAS racks lay them out: archives unpacked, boot files linked at the root.

The layout (rack/layout.py) places each bootloader item at
``bootloader/<bootloader-type>/<arch>/<item>``. While a snapshot is built,
:func:`install_bootloaders` unpacks every archive there (tar, tar.gz, tar.xz;
in a worker thread) beside it, then links the files each of MAAS's boot methods
needs at the snapshot root under MAAS's names (:data:`BOOT_METHODS`, from
MAAS 3.4 provisioningserver/boot): ``bootx64.efi -> bootloader/uefi/amd64/bootx64.efi``.
A method takes its files from the first of its architectures that has a
bootloader directory, as MAAS does. Everything happens inside the snapshot being
built, so ``current`` still switches to a complete tree.

An archive is unpacked only if all of it is safe: regular files and directories
(links inside the tree and special files are skipped), no absolute path, no
``..``, no link that leaves the tree, at most :data:`MAX_MEMBERS` members and
:data:`MAX_BYTES` unpacked bytes (archive bombs). An unsafe one stays packed and
is an error event (``bootloader_archive_refused``); so is a member two archives
of one directory ship with different content (``bootloader_file_clash``, the
first stays) and a boot file that cannot be linked at the root
(``bootloader_link_failed``). None of them fails the pull.
"""

from __future__ import annotations

import asyncio
import hashlib
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from common.ops.logging import get_logger
from common.storage.snapshot import SnapshotBuilder
from rack.layout import BOOTLOADER_DIR

log = get_logger("rack.bootloaders")

ARCHIVE_SUFFIXES = (".tar", ".tar.xz", ".txz", ".tar.gz", ".tgz")
MAX_MEMBERS = 10_000
MAX_BYTES = 512 << 20
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BootMethod:
    """One of MAAS's boot methods: where its bootloader lives and what it links at the root."""

    name: str
    bootloader_type: str
    arches: tuple[str, ...]  # tried in order; the first with a bootloader directory serves
    files: tuple[str, ...]


BOOT_METHODS = (
    BootMethod(
        "pxe",
        "pxe",
        ("i386", "amd64"),
        (
            "lpxelinux.0",
            "chain.c32",
            "ifcpu.c32",
            "ifcpu64.c32",
            "ldlinux.c32",
            "libcom32.c32",
            "libutil.c32",
        ),
    ),
    BootMethod("uefi_amd64_tftp", "uefi", ("amd64",), ("bootx64.efi", "grubx64.efi")),
    BootMethod("uefi_arm64_tftp", "uefi", ("arm64",), ("bootaa64.efi", "grubaa64.efi")),
    BootMethod("open-firmware_ppc64el", "open-firmware", ("ppc64el",), ("bootppc64.bin",)),
    BootMethod("s390x", "s390x", ("s390x",), ("boots390x.bin",)),
)


class UnsafeArchive(Exception):
    """An archive that is not unpacked, and why."""


@dataclass
class InstallReport:
    """What :func:`install_into` did (logged on the loop by :func:`install_bootloaders`)."""

    files: dict[str, str] = field(default_factory=dict)  # relpath -> sha256, unpacked
    links: dict[str, str] = field(default_factory=dict)  # root name -> relpath it points at
    link_hashes: dict[str, str] = field(default_factory=dict)  # root name -> sha256
    unpacked: list[tuple[str, int, int]] = field(default_factory=list)  # archive, files, skipped
    refused: list[tuple[str, str]] = field(default_factory=list)  # archive, reason
    clashes: list[tuple[str, str]] = field(default_factory=list)  # relpath, archive
    link_failures: list[tuple[str, str, str]] = field(default_factory=list)  # name, method, why


def is_archive(relpath: str) -> bool:
    """True for a bootloader item the rack unpacks."""
    return relpath.startswith(BOOTLOADER_DIR + "/") and relpath.endswith(ARCHIVE_SUFFIXES)


async def install_bootloaders(builder: SnapshotBuilder, relpaths: list[str]) -> InstallReport:
    """Unpack the archives among ``relpaths`` (snapshot paths) into ``builder`` and link the
    boot files at its root; each file made is added to the builder's manifest."""
    taken = set(builder.files) | set(builder.blobs)
    report = await asyncio.to_thread(install_into, builder.path, relpaths, taken)
    for relpath, sha256 in report.files.items():
        builder.files[relpath] = sha256
    for name, sha256 in report.link_hashes.items():
        builder.files[name] = sha256
    for archive, files, skipped in report.unpacked:
        log.info("bootloader_unpacked", archive=archive, files=files, skipped=skipped)
    for archive, reason in report.refused:
        log.error("bootloader_archive_refused", archive=archive, reason=reason)
    for relpath, archive in report.clashes:
        log.error(
            "bootloader_file_clash",
            path=relpath,
            archive=archive,
            reason="another archive of this directory already put other content here",
        )
    for name, method, reason in report.link_failures:
        log.error("bootloader_link_failed", name=name, boot_method=method, reason=reason)
    if report.links:
        log.info("bootloaders_linked", links=len(report.links), names=sorted(report.links))
    return report


def install_into(root: Path, relpaths: list[str], taken: set[str]) -> InstallReport:
    """Blocking: unpack the archives among ``relpaths`` under ``root`` and link the boot files.

    ``taken`` holds the snapshot paths already used (not overwritten).
    """
    report = InstallReport()
    used = set(taken)
    dirs: set[str] = set()
    for relpath in sorted(p for p in relpaths if is_archive(p)):
        parent = relpath.rsplit("/", 1)[0]
        dirs.add(parent)
        try:
            members, skipped = _unpack(root, relpath, parent, used, report)
        except (UnsafeArchive, tarfile.TarError, OSError, EOFError) as exc:
            report.refused.append((relpath, str(exc) or type(exc).__name__))
            continue
        report.unpacked.append((relpath, members, skipped))
    for relpath in relpaths:
        if relpath.startswith(BOOTLOADER_DIR + "/") and relpath.count("/") == 3:
            dirs.add(relpath.rsplit("/", 1)[0])
    _link_boot_files(root, dirs, used, report)
    return report


def _member_path(name: str) -> str | None:
    """The relative path a member unpacks to ("" for the archive's root), or None if unsafe."""
    if name.startswith("/") or "\\" in name or "\x00" in name:
        return None
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def _link_escapes(member: tarfile.TarInfo) -> bool:
    target = member.linkname
    if target.startswith("/"):
        return True
    base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
    depth = 0
    for part in (*base.parts, *PurePosixPath(target).parts):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part != ".":
            depth += 1
    return False


def _unpack(
    root: Path, archive: str, parent: str, used: set[str], report: InstallReport
) -> tuple[int, int]:
    """Check all of ``archive`` first, then unpack it under ``parent``; (files, skipped)."""
    plan, skipped = _check(root / archive)
    made: list[str] = []
    try:
        with tarfile.open(root / archive, "r:*") as tar:
            for rel, member in plan:
                dest_rel = f"{parent}/{rel}"
                if member.isdir():
                    if dest_rel in used:
                        report.clashes.append((dest_rel, archive))
                    else:
                        (root / dest_rel).mkdir(parents=True, exist_ok=True)
                    continue
                sha256 = _copy_member(tar, member, root / dest_rel, clash=dest_rel in used)
                if sha256 is None:
                    report.clashes.append((dest_rel, archive))
                elif dest_rel not in report.files:
                    report.files[dest_rel] = sha256
                    used.add(dest_rel)
                    made.append(dest_rel)
    except BaseException:
        for dest_rel in made:  # an archive is unpacked whole or not at all
            (root / dest_rel).unlink(missing_ok=True)
            report.files.pop(dest_rel, None)
            used.discard(dest_rel)
        raise
    return len(made), skipped


def _check(source: Path) -> tuple[list[tuple[str, tarfile.TarInfo]], int]:
    """The members of ``source`` to unpack and how many are skipped; UnsafeArchive if any
    member is unsafe or the archive is too big."""
    plan: list[tuple[str, tarfile.TarInfo]] = []
    skipped = total = 0
    with tarfile.open(source, "r:*") as tar:
        for count, member in enumerate(tar, start=1):
            if count > MAX_MEMBERS:
                raise UnsafeArchive(f"more than {MAX_MEMBERS} members")
            rel = _member_path(member.name)
            if rel is None:
                raise UnsafeArchive(f"member {member.name!r}: not a path inside the archive")
            if (member.issym() or member.islnk()) and _link_escapes(member):
                raise UnsafeArchive(f"member {member.name!r}: a link that leaves the tree")
            if not (member.isreg() or member.isdir()):
                skipped += 1  # links inside the tree, devices, fifos
                continue
            total += member.size if member.isreg() else 0
            if total > MAX_BYTES:
                raise UnsafeArchive(f"unpacks to more than {MAX_BYTES} bytes")
            if rel:
                plan.append((rel, member))
    return plan, skipped


def _copy_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, *, clash: bool
) -> str | None:
    """Write ``member`` at ``dest``; its sha256, or None when ``dest`` (or, with ``clash``,
    the path) already holds other content."""
    stream = tar.extractfile(member)
    if stream is None:
        raise UnsafeArchive(f"member {member.name!r}: cannot be read")
    digest = hashlib.sha256()
    tmp = dest.with_name(f".{dest.name}.unpacking")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with stream, tmp.open("wb") as out:
            _copy(stream, out, digest, member.size)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sha256 = digest.hexdigest()
    if clash or dest.exists() or dest.is_symlink():
        same = dest.is_file() and not dest.is_symlink() and _sha256_of(dest) == sha256
        tmp.unlink()
        return sha256 if same else None
    tmp.chmod(0o644)
    tmp.replace(dest)
    return sha256


def _copy(stream: IO[bytes], out: IO[bytes], digest: Any, limit: int) -> None:
    written = 0
    while chunk := stream.read(_CHUNK):
        written += len(chunk)
        if written > limit:
            raise UnsafeArchive("a member is longer than its header says")
        digest.update(chunk)
        out.write(chunk)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _link_boot_files(root: Path, dirs: set[str], used: set[str], report: InstallReport) -> None:
    for method in BOOT_METHODS:
        source_dir = next(
            (
                f"{BOOTLOADER_DIR}/{method.bootloader_type}/{arch}"
                for arch in method.arches
                if f"{BOOTLOADER_DIR}/{method.bootloader_type}/{arch}" in dirs
            ),
            None,
        )
        if source_dir is None:
            continue  # this rack offers no bootloader for the method
        for name in method.files:
            target_rel = f"{source_dir}/{name}"
            target = root / target_rel
            if not target.is_file() or target.is_symlink():
                report.link_failures.append(
                    (name, method.name, f"{target_rel} is not in the bootloader's archives")
                )
                continue
            if name in report.links and report.links[name] == target_rel:
                continue
            link = root / name
            if name in used or link.exists() or link.is_symlink():
                report.link_failures.append(
                    (name, method.name, f"{name} is already taken at the snapshot root")
                )
                continue
            link.symlink_to(target_rel)
            used.add(name)
            report.links[name] = target_rel
            report.link_hashes[name] = report.files.get(target_rel) or _sha256_of(target)
