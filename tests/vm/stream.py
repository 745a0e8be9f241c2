"""A signed sample stream whose newest Ubuntu amd64 ga kernel and initrd are real, bootable files.

The stream is the sample stream (common/mirror/samplestream.py) with one version
of each product; the ``boot-kernel`` and ``boot-initrd`` items of noble's amd64
``ga-24.04`` product are replaced by the given files, and so is the PXE
bootloader's ``syslinux.tar.xz`` (a tar.xz of the given files: Debian's
lpxelinux.0 and its modules); their sha256 and size are rewritten in the
product documents, which are signed again with the stream's key (so the region
verifies them as it would images.maas.io's).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from common.mirror.samplestream import LABEL, SampleStream, write_sample_stream
from common.trust.keyrings import SigningKey

PRODUCTS_ID = f"com.ubuntu.maas:{LABEL}:v3:download"
PRODUCT = f"com.ubuntu.maas.{LABEL}:v3:boot:24.04:amd64:ga-24.04"
BOOTLOADERS_ID = f"com.ubuntu.maas:{LABEL}:1:bootloader-download"
PXE_PRODUCT = f"com.ubuntu.maas.{LABEL}:1:pxelinux:pxe:i386"
SNAPSHOT_DIR = "ubuntu/amd64/ga-24.04/noble/stable"


def write_bootable_stream(
    root: Path,
    key: SigningKey,
    *,
    kernel: bytes,
    initrd: bytes,
    syslinux: dict[str, bytes],
) -> SampleStream:
    """Write the stream under ``root`` signed by ``key`` (blocking); what was written."""
    stream = write_sample_stream(root, file_size=4096, versions=1, signing_key=key)
    _replace(root, key, PRODUCTS_ID, PRODUCT, {"boot-kernel": kernel, "boot-initrd": initrd})
    _replace(root, key, BOOTLOADERS_ID, PXE_PRODUCT, {"syslinux": _tar_xz(syslinux)})
    return stream


def _replace(
    root: Path, key: SigningKey, content_id: str, product: str, items: dict[str, bytes]
) -> None:
    """Give the ``items`` of every version of ``product`` new bytes; sign the document again."""
    doc_path = root / "streams" / "v1" / f"{content_id}.json"
    doc: dict[str, Any] = json.loads(doc_path.read_bytes())
    for version in doc["products"][product]["versions"].values():
        for name, data in items.items():
            item = version["items"][name]
            (root / item["path"]).write_bytes(data)
            item["sha256"] = hashlib.sha256(data).hexdigest()
            item["size"] = len(data)
    payload = json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"
    doc_path.write_bytes(payload)
    doc_path.with_suffix(".sjson").write_bytes(key.clearsign(payload))


def _tar_xz(files: dict[str, bytes]) -> bytes:
    """A tar.xz holding ``files`` at its top level, as MAAS's bootloader archives do."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", format=tarfile.GNU_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
