"""Where the saved upstream samples live, and small builders of test documents.

The samples are checked in under ``tests/fixtures/upstream``, so a bare clone has them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.fixtures import UPSTREAM

SAMPLES_DIR = UPSTREAM
SAMPLE_GROUPS = ("maas-fixtures", "simplestreams-examples", "maas-images-docs")

JAMMY_GA = "com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04"


def samples_dir() -> Path:
    """Return the upstream samples directory, failing loudly if the checkout lacks it."""
    if not SAMPLES_DIR.is_dir():
        raise FileNotFoundError(f"{SAMPLES_DIR} is missing: the checkout is incomplete")
    return SAMPLES_DIR


def sample_files() -> list[Path]:
    """Every saved JSON document of the three sample groups, sorted."""
    root = samples_dir()
    return sorted(p for group in SAMPLE_GROUPS for p in (root / group).glob("*.json"))


def fixture_bytes(name: str) -> bytes:
    """Raw bytes of one file in ``maas-fixtures/``."""
    return (samples_dir() / "maas-fixtures" / name).read_bytes()


_PRODUCTS_DOC: dict[str, Any] = {
    "format": "products:1.0",
    "content_id": "com.ubuntu.maas:stable:v3:download",
    "datatype": "image-ids",
    "updated": "Thu, 24 Jul 2025 09:01:43 +0000",
    "products": {
        JAMMY_GA: {
            "arch": "amd64",
            "os": "ubuntu",
            "release": "jammy",
            "subarch": "ga-22.04",
            "kflavor": "generic",
            "label": "stable",
            "release_title": "22.04 LTS",
            "versions": {
                "20250718": {
                    "items": {
                        "squashfs": {
                            "ftype": "squashfs",
                            "path": "jammy/amd64/20250718/squashfs",
                            "sha256": "edbd57a3d69392e6942ef4a35bc7c062"
                            "cc234b9d1d48d99bf3e15401ceda0d46",
                            "size": 455462912,
                        },
                    },
                },
            },
        },
    },
}

_INDEX_DOC: dict[str, Any] = {
    "format": "index:1.0",
    "updated": "Thu, 24 Jul 2025 08:01:49 +0000",
    "index": {
        "com.ubuntu.maas:stable:v3:download": {
            "datatype": "image-ids",
            "format": "products:1.0",
            "path": "streams/v1/com.ubuntu.maas:stable:v3:download.json",
            "products": [JAMMY_GA],
            "updated": "Thu, 24 Jul 2025 08:01:49 +0000",
        },
    },
}


def products_doc() -> dict[str, Any]:
    """A fresh, valid one-item products document to mutate in a test."""
    return copy.deepcopy(_PRODUCTS_DOC)


def index_doc() -> dict[str, Any]:
    """A fresh, valid one-entry index document to mutate in a test."""
    return copy.deepcopy(_INDEX_DOC)


def squashfs_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The one item of :func:`products_doc`, for in-place edits."""
    item: dict[str, Any] = doc["products"][JAMMY_GA]["versions"]["20250718"]["items"]["squashfs"]
    return item


def encode(doc: dict[str, Any]) -> bytes:
    """Serialise a test document as the JSON bytes a server would send."""
    return json.dumps(doc).encode()
