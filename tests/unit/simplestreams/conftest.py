"""Parsed upstream samples shared by the simplestreams tests."""

from __future__ import annotations

import pytest

from simplestreams import Index, ProductList, parse_index, parse_products
from tests.unit.simplestreams.samples import fixture_bytes


@pytest.fixture(scope="session")
def ubuntu() -> ProductList:
    """The images.maas.io v3 Ubuntu products excerpt saved by MAAS (HEAD version)."""
    return parse_products(fixture_bytes("simplestreams_ubuntu.json"))


@pytest.fixture(scope="session")
def ubuntu_with_hwe() -> ProductList:
    """The first saved Ubuntu excerpt, which still has the hwe-22.04 product."""
    return parse_products(fixture_bytes("simplestreams_ubuntu.at-3182e1bf.json"))


@pytest.fixture(scope="session")
def bootloaders() -> ProductList:
    """The bootloader products excerpt."""
    return parse_products(fixture_bytes("simplestreams_bootloaders.json"))


@pytest.fixture(scope="session")
def centos() -> ProductList:
    """The CentOS products excerpt."""
    return parse_products(fixture_bytes("simplestreams_centos.json"))


@pytest.fixture(scope="session")
def maas_index() -> Index:
    """The images.maas.io stable index excerpt."""
    return parse_index(fixture_bytes("simplestreams_index.json"))
