"""A signed sample stream whose newest Ubuntu amd64 ga kernel and initrd are real, bootable files.

The stream is the sample stream (common/mirror/samplestream.py) with one version
of each product; the ``boot-kernel`` and ``boot-initrd`` items of noble's amd64
``ga-24.04`` product are replaced by the given files, their sha256 and size
rewritten in the product document, and the document signed again with the
stream's key (so the region verifies it as it would images.maas.io's).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from common.mirror.samplestream import LABEL, SampleStream, write_sample_stream
from common.trust.keyrings import SigningKey

PRODUCTS_ID = f"com.ubuntu.maas:{LABEL}:v3:download"
PRODUCT = f"com.ubuntu.maas.{LABEL}:v3:boot:24.04:amd64:ga-24.04"
SNAPSHOT_DIR = "ubuntu/amd64/ga-24.04/noble/stable"


def write_bootable_stream(
    root: Path, key: SigningKey, *, kernel: bytes, initrd: bytes
) -> SampleStream:
    """Write the stream under ``root`` signed by ``key`` (blocking); what was written."""
    stream = write_sample_stream(root, file_size=4096, versions=1, signing_key=key)
    doc_path = root / "streams" / "v1" / f"{PRODUCTS_ID}.json"
    doc: dict[str, Any] = json.loads(doc_path.read_bytes())
    versions = doc["products"][PRODUCT]["versions"]
    for version in versions.values():
        for name, data in (("boot-kernel", kernel), ("boot-initrd", initrd)):
            item = version["items"][name]
            (root / item["path"]).write_bytes(data)
            item["sha256"] = hashlib.sha256(data).hexdigest()
            item["size"] = len(data)
    payload = json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"
    doc_path.write_bytes(payload)
    doc_path.with_suffix(".sjson").write_bytes(key.clearsign(payload))
    return stream
