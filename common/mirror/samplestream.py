"""A realistic, signed, MAAS-shaped SimpleStreams tree with synthetic file contents.

Used by tests, benchmarks and the demo in place of images.maas.io. The products,
fields, item names and paths follow the real ephemeral-v3 stream (Ubuntu v3
kernels, initrds and squashfs; bootloaders; CentOS bases); only the bytes are
synthetic (bootloader archives are real tar.xz files of synthetic members). A file's bytes depend on its path alone, so a path never changes
content, as the format requires.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from common.trust.keyrings import SigningKey

LABEL = "stable"
KEYRING_NAME = "sample-keyring.gpg"
_CHUNK = 1 << 20

# (release, version, codename, title, eol, esm_eol, extra kernels (subarch, kpackage))
_UBUNTU = (
    ("jammy", "22.04", "Jammy Jellyfish", "22.04 LTS", "2027-04-21", "2032-04-21", ()),
    (
        "noble",
        "24.04",
        "Noble Numbat",
        "24.04 LTS",
        "2029-05-31",
        "2034-04-25",
        (("hwe-24.04", "linux-generic-hwe-24.04"),),
    ),
)
_ARCHES = ("amd64", "arm64")
_OLD_SUBARCHES = "generic,hwe-p,hwe-q,hwe-r,hwe-s,hwe-t,hwe-u,hwe-v,hwe-w"
# (os, bootloader-type, arch, items)
_BOOTLOADERS = (
    ("pxelinux", "pxe", "i386", ("syslinux",)),
    ("grub-efi-signed", "uefi", "amd64", ("grub2-signed", "shim-signed")),
    ("grub-efi", "uefi", "arm64", ("grub2",)),
    ("grub-ieee1275", "open-firmware", "ppc64el", ("grub2",)),
)
# What each bootloader archive holds, under the names MAAS racks link at their root.
_ARCHIVE_MEMBERS = {
    ("pxe", "syslinux"): (
        "lpxelinux.0",
        "chain.c32",
        "ifcpu.c32",
        "ifcpu64.c32",
        "ldlinux.c32",
        "libcom32.c32",
        "libutil.c32",
    ),
    ("uefi", "grub2-signed"): ("grubx64.efi",),
    ("uefi", "shim-signed"): ("bootx64.efi",),
    ("uefi", "grub2"): ("bootaa64.efi", "grubaa64.efi"),
    ("open-firmware", "grub2"): ("bootppc64.bin",),
}


@dataclass(frozen=True)
class SampleStream:
    """What :func:`write_sample_stream` wrote."""

    root: Path
    keyring: Path
    fingerprint: str
    files: int
    total_bytes: int


def parse_size(text: str) -> int:
    """Parse ``25M``, ``1G``, ``512K`` or a byte count; ValueError if malformed."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    raw = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        scale = units.get(raw[-1:], 1)
        value = int(float(raw[:-1]) * scale) if scale > 1 else int(raw)
    except ValueError:
        raise ValueError(f"--file-size: {text!r} is not a size such as 25M or 1G") from None
    if value < 1:
        raise ValueError(f"--file-size: {text!r} must be at least one byte")
    return value


def serials(newest: date, count: int) -> list[str]:
    """``count`` version names, newest last, one month (28 days) apart."""
    return [(newest - timedelta(days=28 * i)).strftime("%Y%m%d") for i in reversed(range(count))]


class _Tree:
    """Writes synthetic files and remembers their sha256 and size."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = 0
        self.total = 0

    def item(self, path: str, size: int, ftype: str, **extra: str) -> dict[str, Any]:
        sha256 = _write_synthetic(self.root / path, path, size)
        self.files += 1
        self.total += size
        return {"ftype": ftype, "path": path, "sha256": sha256, "size": size, **extra}

    def archive(
        self, path: str, members: tuple[str, ...], member_size: int, **extra: str
    ) -> dict[str, Any]:
        """A tar.xz item holding ``members`` (synthetic bytes, reproducible archive)."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:xz", format=tarfile.GNU_FORMAT) as tar:
            for name in members:
                data = random.Random(f"{path}/{name}").randbytes(member_size)  # not a secret
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                info.uname = info.gname = "root"
                tar.addfile(info, io.BytesIO(data))
        payload = buffer.getvalue()
        target.write_bytes(payload)
        self.files += 1
        self.total += len(payload)
        return {
            "ftype": "archive.tar.xz",
            "path": path,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload),
            **extra,
        }


def _write_synthetic(target: Path, seed: str, size: int) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    rng = random.Random(seed)  # reproducible filler, not a secret
    with target.open("wb") as f:
        left = size
        while left:
            chunk = rng.randbytes(min(left, _CHUNK))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _ubuntu_products(tree: _Tree, versions: list[str], big: int, small: int) -> dict[str, Any]:
    products: dict[str, Any] = {}
    for release, version, codename, title, eol, esm, extra_kernels in _UBUNTU:
        ga = f"ga-{version}"
        subarches = f"{_OLD_SUBARCHES},ga-{version}"
        for arch in _ARCHES:
            kernels = (
                [(ga, "linux-generic"), *extra_kernels]
                if arch == "amd64"
                else [(ga, "linux-generic")]
            )
            shared: dict[str, dict[str, Any]] = {}
            for serial in versions:
                base = f"{release}/{arch}/{serial}"
                shared[serial] = {
                    "squashfs": tree.item(f"{base}/squashfs", big, "squashfs"),
                    "manifest": tree.item(f"{base}/squashfs.manifest", small, "manifest"),
                }
            for subarch, kpackage in kernels:
                name = f"com.ubuntu.maas.{LABEL}:v3:boot:{version}:{arch}:{subarch}"
                product_versions = {}
                for serial in versions:
                    kdir = f"{release}/{arch}/{serial}/{subarch}/generic"
                    items = dict(shared[serial])
                    items["boot-kernel"] = tree.item(
                        f"{kdir}/boot-kernel", big, "boot-kernel", kpackage=kpackage
                    )
                    items["boot-initrd"] = tree.item(
                        f"{kdir}/boot-initrd", big, "boot-initrd", kpackage=kpackage
                    )
                    product_versions[serial] = {"items": items}
                products[name] = {
                    "arch": arch,
                    "kflavor": "generic",
                    "krel": release,
                    "label": LABEL,
                    "os": "ubuntu",
                    "release": release,
                    "release_codename": codename,
                    "release_title": title,
                    "subarch": subarch,
                    "subarches": subarches if subarch == ga else f"{subarches},{subarch}",
                    "support_eol": eol,
                    "support_esm_eol": esm,
                    "version": version,
                    "versions": product_versions,
                }
    return products


def _bootloader_products(tree: _Tree, versions: list[str], small: int) -> dict[str, Any]:
    products: dict[str, Any] = {}
    for os_name, btype, arch, names in _BOOTLOADERS:
        product_versions = {}
        for serial in versions:
            bver = f"{serial}.0"
            items = {
                n: tree.archive(
                    f"bootloaders/{btype}/{arch}/{bver}/{n}.tar.xz",
                    _ARCHIVE_MEMBERS[(btype, n)],
                    max(1, small // 8),
                    src_package=n,
                    src_release="noble",
                )
                for n in names
            }
            product_versions[bver] = {"items": items}
        products[f"com.ubuntu.maas.{LABEL}:1:{os_name}:{btype}:{arch}"] = {
            "arch": arch,
            "arches": arch,
            "bootloader-type": btype,
            "label": LABEL,
            "os": os_name,
            "versions": product_versions,
        }
    return products


def _centos_products(tree: _Tree, versions: list[str], big: int, small: int) -> dict[str, Any]:
    product_versions = {}
    for serial in versions:
        base = f"centos/8/amd64/{serial}_01"
        product_versions[f"{serial}_01"] = {
            "items": {
                "root-tgz": tree.item(f"{base}/root-tgz", big, "root-tgz"),
                "manifest": tree.item(f"{base}/root-tgz.manifest", small, "manifest"),
            }
        }
    return {
        f"com.ubuntu.maas.{LABEL}:centos-bases:8:amd64": {
            "arch": "amd64",
            "label": LABEL,
            "os": "centos",
            "release": "8",
            "release_title": "CentOS 8",
            "subarch": "generic",
            "subarches": "generic",
            "support_eol": "2024-05-31",
            "version": "8",
            "versions": product_versions,
        }
    }


def _documents(
    tree: _Tree, versions: list[str], big: int, small: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    yield f"com.ubuntu.maas:{LABEL}:v3:download", _ubuntu_products(tree, versions, big, small)
    yield (
        f"com.ubuntu.maas:{LABEL}:1:bootloader-download",
        _bootloader_products(tree, versions, small),
    )
    yield (
        f"com.ubuntu.maas:{LABEL}:centos-bases-download",
        _centos_products(tree, versions, big, small),
    )


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"


def write_sample_stream(
    root: Path,
    *,
    file_size: int,
    versions: int = 2,
    newest: date = date(2025, 7, 18),
    signing_key: SigningKey | None = None,
) -> SampleStream:
    """Write a signed sample stream under ``root``; return what was written.

    Large files (squashfs, kernels, initrds, root-tgz) are ``file_size`` bytes;
    manifests are small, and bootloader items are real tar.xz archives of small
    files under MAAS's names (``bootx64.efi``, ``lpxelinux.0``, ...). ``signing_key`` defaults to a
    new throwaway key whose public half is written to ``root/sample-keyring.gpg``.
    """
    tree = _Tree(root)
    small = min(file_size, 64 << 10)
    updated = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    names = serials(newest, versions)
    (root / "streams" / "v1").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bootsync-sample-key-") as tmp:
        key = signing_key or SigningKey.create(
            Path(tmp) / "gnupg",
            name="bootsync sample stream",
            email="sample-stream@bootsync.invalid",
        )
        try:
            return _write(
                root, tree, key, names=names, file_size=file_size, small=small, updated=updated
            )
        finally:
            if signing_key is None:
                key.close()


def _write(
    root: Path,
    tree: _Tree,
    key: SigningKey,
    *,
    names: list[str],
    file_size: int,
    small: int,
    updated: str,
) -> SampleStream:
    meta = root / "streams" / "v1"
    index_entries: dict[str, Any] = {}
    for content_id, products in _documents(tree, names, file_size, small):
        doc = {
            "content_id": content_id,
            "datatype": "image-ids",
            "format": "products:1.0",
            "updated": updated,
            "products": products,
        }
        payload = _dump(doc)
        (meta / f"{content_id}.json").write_bytes(payload)
        (meta / f"{content_id}.sjson").write_bytes(key.clearsign(payload))
        index_entries[content_id] = {
            "datatype": "image-ids",
            "format": "products:1.0",
            "path": f"streams/v1/{content_id}.json",
            "products": sorted(products),
            "updated": updated,
        }
    index = {"format": "index:1.0", "index": index_entries, "updated": updated}
    (meta / "index.json").write_bytes(_dump(index))
    for entry in index_entries.values():
        entry["path"] = entry["path"].removesuffix(".json") + ".sjson"
    (meta / "index.sjson").write_bytes(key.clearsign(_dump(index)))
    keyring = root / KEYRING_NAME
    keyring.write_bytes(key.export_public())
    return SampleStream(
        root=root,
        keyring=keyring,
        fingerprint=key.fingerprint,
        files=tree.files,
        total_bytes=tree.total,
    )
