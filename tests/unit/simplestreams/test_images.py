"""Products map to MAAS image specs, and selections pick them with MAAS semantics."""

from __future__ import annotations

import pytest

from simplestreams import (
    ImageSpec,
    ProductList,
    Selection,
    image_spec_of,
    is_bootloader,
    matches_any,
    product_fields,
    resource_architecture,
    resource_name,
    selection_matches,
)
from tests.unit.simplestreams.samples import JAMMY_GA

NOBLE = ImageSpec(
    os="ubuntu",
    release="noble",
    arch="amd64",
    subarch="ga-24.04",
    kflavor="generic",
    label="stable",
)


def _spec(products: ProductList, name: str) -> ImageSpec:
    return image_spec_of(product_fields(products, products.products[name]))


def test_ubuntu_product_spec_and_resource_names(ubuntu: ProductList) -> None:
    """jammy amd64 ga-22.04 is resource ubuntu/jammy on amd64/ga-22.04."""
    spec = _spec(ubuntu, JAMMY_GA)
    assert spec == ImageSpec(
        os="ubuntu",
        release="jammy",
        arch="amd64",
        subarch="ga-22.04",
        kflavor="generic",
        label="stable",
    )
    assert (resource_name(spec), resource_architecture(spec)) == ("ubuntu/jammy", "amd64/ga-22.04")


def test_uefi_bootloader_spec_uses_bootloader_type_and_generic(bootloaders: ProductList) -> None:
    """grub-efi-signed is resource grub-efi-signed/uefi on amd64/generic."""
    spec = _spec(bootloaders, "com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64")
    assert spec.bootloader_type == "uefi"
    assert spec.release == "uefi"
    assert resource_name(spec) == "grub-efi-signed/uefi"
    assert resource_architecture(spec) == "amd64/generic"


def test_every_sample_bootloader_gets_its_maas_resource_name(bootloaders: ProductList) -> None:
    """The five sample bootloaders map to MAAS's os/bootloader-type names."""
    names = sorted(
        (resource_name(s), resource_architecture(s))
        for s in (_spec(bootloaders, n) for n in bootloaders.products)
    )
    assert names == [
        ("grub-efi-signed/uefi", "amd64/generic"),
        ("grub-efi/uefi", "arm64/generic"),
        ("grub-ieee1275/open-firmware", "ppc64el/generic"),
        ("pxelinux/pxe", "amd64/generic"),
        ("pxelinux/pxe", "i386/generic"),
    ]


def test_centos_spec_keeps_its_own_os_and_release(centos: ProductList) -> None:
    """CentOS 7 is resource centos/centos70 on amd64/generic."""
    spec = _spec(centos, "com.ubuntu.maas.stable:centos-bases:7.0:amd64")
    assert (resource_name(spec), resource_architecture(spec)) == (
        "centos/centos70",
        "amd64/generic",
    )


def test_missing_os_defaults_to_ubuntu() -> None:
    """A product without os is an Ubuntu image, as MAAS assumes."""
    spec = image_spec_of({"release": "noble", "arch": "amd64", "subarch": "ga-24.04"})
    assert spec.os == "ubuntu"
    assert spec.kflavor == "generic"


@pytest.mark.parametrize(
    ("subarch", "kflavor", "expected"),
    [
        ("ga-22.04", "lowlatency", "ga-22.04-lowlatency"),
        ("hwe-16.04-edge", "lowlatency", "hwe-16.04-lowlatency-edge"),
        ("hwe-24.04", "lowlatency", "hwe-24.04-lowlatency"),
        ("ga-22.04", "generic", "ga-22.04"),
        ("ga-22.04-lowlatency", "lowlatency", "ga-22.04-lowlatency"),
        ("generic", "lowlatency", "generic"),
    ],
)
def test_non_generic_kernel_flavour_is_spliced_into_the_subarch(
    subarch: str, kflavor: str, expected: str
) -> None:
    """Flavoured ga/hwe kernels get their own subarch so they do not overwrite generic."""
    fields = {"release": "jammy", "arch": "amd64", "subarch": subarch, "kflavor": kflavor}
    assert image_spec_of(fields).subarch == expected


def test_is_bootloader_looks_at_bootloader_type() -> None:
    """Only fields with a non-empty bootloader-type are bootloaders."""
    assert is_bootloader({"bootloader-type": "pxe"})
    assert not is_bootloader({"os": "pxelinux"})
    assert not is_bootloader({"bootloader-type": ""})


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (Selection("ubuntu", "noble", ("amd64",), ("ga-24.04",), ("stable",)), True),
        (Selection("ubuntu", "noble"), True),
        (Selection("*", "*"), True),
        (Selection("*", "noble", ("amd64",)), True),
        (Selection("ubuntu", "*", ("amd64",)), True),
        (Selection("ubuntu", "jammy"), False),
        (Selection("centos", "noble"), False),
        (Selection("ubuntu", "noble", ("arm64", "s390x")), False),
        (Selection("ubuntu", "noble", ("arm64", "amd64")), True),
        (Selection("ubuntu", "noble", subarches=("hwe-24.04",)), False),
        (Selection("ubuntu", "noble", subarches=("hwe-24.04", "*")), True),
        (Selection("ubuntu", "noble", labels=("candidate",)), False),
        (Selection("ubuntu", "noble", arches=()), False),
        (Selection("", "noble"), False),
    ],
)
def test_selection_semantics_follow_maas(selection: Selection, expected: bool) -> None:
    """os/release equal or *, arch/subarch/label listed or list holds *."""
    assert selection_matches(selection, NOBLE) is expected


def test_any_matching_selection_is_enough() -> None:
    """One passing selection among several selects the image."""
    assert matches_any([Selection("centos", "8"), Selection("ubuntu", "noble")], NOBLE)
    assert not matches_any([Selection("centos", "8"), Selection("ubuntu", "jammy")], NOBLE)


def test_empty_selection_list_means_everything() -> None:
    """As in MAAS's import filter, no selections select every image."""
    assert matches_any([], NOBLE)


def test_selection_lists_are_stored_as_tuples() -> None:
    """Lists given to Selection become tuples; a bare string is refused."""
    assert Selection("ubuntu", "noble", ["amd64"]).arches == ("amd64",)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a string"):
        Selection("ubuntu", "noble", "amd64")  # type: ignore[arg-type]
