"""The parser reads every saved upstream document and keeps its real values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simplestreams import (
    Index,
    ProductList,
    flatten,
    parse_index,
    parse_products,
    render_index,
    render_products,
)
from tests.unit.simplestreams.samples import JAMMY_GA, sample_files, samples_dir

JAMMY_SQUASHFS_SHA = "480c285d96db9e501e63d44b64714288448b368007e0b3eb97bf77a2a64cfd78"


def _parse_any(path: Path) -> Index | ProductList:
    raw = path.read_bytes()
    if json.loads(raw)["format"] == "index:1.0":
        return parse_index(raw, source=path.name)
    return parse_products(raw, source=path.name)


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_every_saved_sample_parses_and_renders_back_to_the_same_json(path: Path) -> None:
    """Each sample parses, and rendering it gives the same JSON data as upstream sent."""
    parsed = _parse_any(path)
    rendered = render_index(parsed) if isinstance(parsed, Index) else render_products(parsed)
    assert json.loads(rendered) == json.loads(path.read_bytes())


def test_sample_set_covers_all_three_groups() -> None:
    """The parametrized sample test sees fixtures, format examples and the builder index."""
    groups = {p.parent.name for p in sample_files()}
    assert groups == {"maas-fixtures", "simplestreams-examples", "maas-images-docs"}
    assert len(sample_files()) >= 8


def test_jammy_squashfs_has_its_upstream_sha256_and_size(ubuntu: ProductList) -> None:
    """jammy amd64 20250615 squashfs carries the sha256 and size images.maas.io lists."""
    item = ubuntu.products[JAMMY_GA].versions["20250615"].items["squashfs"]
    assert item.sha256 == JAMMY_SQUASHFS_SHA
    assert item.size == 455872512
    assert item.path == "jammy/amd64/20250615/squashfs"
    assert item.attrs["ftype"] == "squashfs"


def test_ubuntu_sample_has_its_four_products(ubuntu: ProductList) -> None:
    """The Ubuntu excerpt lists 22.04 and 24.04 kernels for amd64 and arm64."""
    assert sorted(ubuntu.products) == [
        "com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04",
        "com.ubuntu.maas.stable:v3:boot:22.04:arm64:ga-22.04",
        "com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04",
        "com.ubuntu.maas.stable:v3:boot:24.04:arm64:ga-24.04",
    ]
    assert ubuntu.content_id == "com.ubuntu.maas:stable:v3:download"
    assert ubuntu.datatype == "image-ids"
    assert ubuntu.updated == "Thu, 24 Jul 2025 09:01:43 +0000"
    assert ubuntu.products[JAMMY_GA].attrs["release_codename"] == "Jammy Jellyfish"


def test_flattened_item_inherits_product_and_document_fields(ubuntu: ProductList) -> None:
    """A flattened squashfs item sees release_title, release and content_id as strings."""
    flat = next(f for f in flatten(ubuntu) if f.sha256 == JAMMY_SQUASHFS_SHA)
    assert (flat.product_name, flat.version_name, flat.item_name) == (
        JAMMY_GA,
        "20250615",
        "squashfs",
    )
    assert flat.fields["release_title"] == "22.04 LTS"
    assert flat.fields["release"] == "jammy"
    assert flat.fields["content_id"] == "com.ubuntu.maas:stable:v3:download"
    assert flat.fields["size"] == "455872512"
    assert flat.fields["item_name"] == "squashfs"
    assert flat.size == 455872512
    assert len(flatten(ubuntu)) == 32


def test_maas_index_lists_the_three_stable_content_ids(maas_index: Index) -> None:
    """The stable index names the v3, bootloader and CentOS products files."""
    assert sorted(maas_index.entries) == [
        "com.ubuntu.maas:stable:1:bootloader-download",
        "com.ubuntu.maas:stable:centos-bases-download",
        "com.ubuntu.maas:stable:v3:download",
    ]
    v3 = maas_index.entries["com.ubuntu.maas:stable:v3:download"]
    assert v3.path == "streams/v1/com.ubuntu.maas:stable:v3:download.json"
    assert v3.format == "products:1.0"
    assert v3.datatype == "image-ids"
    assert JAMMY_GA in v3.products
    assert len(maas_index.entries["com.ubuntu.maas:stable:1:bootloader-download"].products) == 5


def test_builder_tutorial_index_uses_image_downloads_datatype() -> None:
    """The maas-images candidate index parses with datatype image-downloads."""
    raw = (
        samples_dir() / "maas-images-docs" / "candidate-index.from-build-stream-tutorial.json"
    ).read_bytes()
    index = parse_index(raw)
    entry = index.entries["com.ubuntu.maas:candidate:v3:download"]
    assert entry.datatype == "image-downloads"
    assert (
        "com.ubuntu.maas.candidate:v3:boot:24.04:amd64:hwe-24.04-lowlatency-edge" in entry.products
    )


def test_minimal_simplestreams_example_parses() -> None:
    """The generic simplestreams example has one product with two 38-byte items."""
    raw = (samples_dir() / "simplestreams-examples" / "minimal-download.json").read_bytes()
    products = parse_products(raw)
    version = products.products["com.example:product1"].versions["20150915"]
    assert sorted(version.items) == ["item1", "item2"]
    assert {item.size for item in version.items.values()} == {38}


def test_bootloader_items_keep_their_source_package_fields(bootloaders: ProductList) -> None:
    """Bootloader archives keep src_package and src_version in their attrs."""
    product = bootloaders.products["com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64"]
    item = product.versions["20231004.0"].items["shim-signed"]
    assert item.attrs["src_package"] == "shim-signed"
    assert item.attrs["src_version"] == "1.51.3+15.7-0ubuntu1"
    assert product.attrs["bootloader-type"] == "uefi"


def test_centos_versions_use_underscore_serials(centos: ProductList) -> None:
    """CentOS versions are YYYYMMDD_NN and root-tgz is the image file."""
    product = centos.products["com.ubuntu.maas.stable:centos-bases:8:amd64"]
    assert sorted(product.versions) == ["20211029_01", "20211104_01"]
    assert product.versions["20211104_01"].items["root-tgz"].size == 655801637
