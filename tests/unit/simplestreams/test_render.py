"""Rendering is canonical and parse(render(x)) gives x back."""

from __future__ import annotations

import json

from hypothesis import given, settings

from simplestreams import (
    Index,
    ProductList,
    parse_index,
    parse_products,
    render_index,
    render_products,
)
from tests.unit.simplestreams.samples import fixture_bytes
from tests.unit.simplestreams.strategies import indexes, product_lists


@settings(deadline=None, max_examples=50)
@given(product_lists())
def test_products_round_trip_through_render_and_parse(product_list: ProductList) -> None:
    """Any valid products model survives render then parse unchanged."""
    assert parse_products(render_products(product_list)) == product_list


@settings(deadline=None)
@given(indexes())
def test_index_round_trips_through_render_and_parse(index: Index) -> None:
    """Any valid index model survives render then parse unchanged."""
    assert parse_index(render_index(index)) == index


@settings(deadline=None, max_examples=50)
@given(product_lists())
def test_rendering_is_a_fixed_point(product_list: ProductList) -> None:
    """Rendering the re-parsed document gives the same bytes again."""
    first = render_products(product_list)
    assert render_products(parse_products(first)) == first


def test_render_uses_sorted_keys_one_space_indent_and_final_newline(ubuntu: ProductList) -> None:
    """The canonical form is sorted keys, indent=1 and a trailing newline."""
    rendered = render_products(ubuntu)
    assert rendered.endswith(b"}\n")
    assert rendered == (json.dumps(json.loads(rendered), sort_keys=True, indent=1) + "\n").encode()
    assert rendered.startswith(b'{\n "content_id": "com.ubuntu.maas:stable:v3:download",\n')


def test_render_of_upstream_index_matches_upstream_bytes() -> None:
    """The MAAS fixture index was written in this canonical form and renders identically."""
    raw = fixture_bytes("simplestreams_index.json")
    assert render_index(parse_index(raw)).rstrip(b"\n") == raw.rstrip(b"\n")


def test_render_escapes_non_ascii_so_output_is_always_utf8() -> None:
    """Non-ASCII text, even a lone surrogate, renders to valid UTF-8 and parses back."""
    product_list = ProductList(content_id="c", attrs={"title": "Noble Numbat \u2013 \udc80"})
    rendered = render_products(product_list)
    rendered.decode("utf-8")
    assert parse_products(rendered) == product_list
