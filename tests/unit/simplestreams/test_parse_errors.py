"""Each parser rule refuses bad input with an error that names where it broke."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from simplestreams import StreamFormatError, parse_index, parse_products
from tests.unit.simplestreams.samples import (
    JAMMY_GA,
    encode,
    index_doc,
    products_doc,
    squashfs_of,
)

SOURCE = "streams/v1/com.ubuntu.maas:stable:v3:download.json"
ITEM = f"products[{JAMMY_GA}].versions[20250718].items[squashfs]"


def _item_error(**changes: Any) -> StreamFormatError:
    doc = products_doc()
    item = squashfs_of(doc)
    for key, value in changes.items():
        if value is ...:
            del item[key]
        else:
            item[key] = value
    with pytest.raises(StreamFormatError) as caught:
        parse_products(encode(doc), source=SOURCE)
    return caught.value


def test_short_sha256_is_reported_at_the_item_field() -> None:
    """A sha256 that is not 64 hex digits names product, version, item and field."""
    err = _item_error(sha256="abc123")
    assert err.location == f"{SOURCE}: {ITEM}.sha256"
    assert err.reason == "not 64 hex digits"
    assert str(err) == f"{SOURCE}: {ITEM}.sha256: not 64 hex digits"


def test_sha256_with_non_hex_digits_is_refused() -> None:
    """Sixty-four characters that are not all hex are refused."""
    assert _item_error(sha256="g" * 64).reason == "not 64 hex digits"


def test_sha256_that_is_not_a_string_is_refused() -> None:
    """A numeric sha256 is a type error at the sha256 field."""
    err = _item_error(sha256=12345)
    assert err.location == f"{SOURCE}: {ITEM}.sha256"
    assert err.reason == "expected a string, got a number"


def test_uppercase_sha256_is_normalised_to_lowercase() -> None:
    """An uppercase sha256 is accepted and stored lowercase."""
    doc = products_doc()
    item = squashfs_of(doc)
    item["sha256"] = item["sha256"].upper()
    parsed = parse_products(encode(doc))
    assert (
        parsed.products[JAMMY_GA].versions["20250718"].items["squashfs"].sha256
        == item["sha256"].lower()
    )


def test_negative_size_is_refused() -> None:
    """A negative size is refused at the size field."""
    err = _item_error(size=-1)
    assert err.location == f"{SOURCE}: {ITEM}.size"
    assert err.reason == "must not be negative, got -1"


def test_boolean_size_is_refused() -> None:
    """JSON true is not a size even though Python counts it as an int."""
    err = _item_error(size=True)
    assert err.location == f"{SOURCE}: {ITEM}.size"
    assert err.reason == "expected an integer, got a boolean"


@pytest.mark.parametrize(("size", "kind"), [(1.5, "a number"), ("12", "a string"), (None, "null")])
def test_non_integer_size_is_refused(size: object, kind: str) -> None:
    """Floats, strings and null are not sizes."""
    assert _item_error(size=size).reason == f"expected an integer, got {kind}"


def test_item_with_path_but_no_sha256_is_refused() -> None:
    """A downloadable item must say which sha256 to expect."""
    err = _item_error(sha256=...)
    assert err.location == f"{SOURCE}: {ITEM}.sha256"
    assert err.reason.startswith("missing")


def test_item_with_path_but_no_size_is_refused() -> None:
    """A downloadable item must say how many bytes to expect."""
    err = _item_error(size=...)
    assert err.location == f"{SOURCE}: {ITEM}.size"
    assert err.reason.startswith("missing")


def test_sha256_without_path_is_still_validated() -> None:
    """An informational item's sha256 must be well formed too."""
    assert _item_error(path=..., sha256="xyz").location == f"{SOURCE}: {ITEM}.sha256"


def test_item_without_path_needs_no_checksum() -> None:
    """An item without a path is informational and needs neither sha256 nor size."""
    doc = products_doc()
    squashfs_of(doc).clear()
    item = parse_products(encode(doc)).products[JAMMY_GA].versions["20250718"].items["squashfs"]
    assert (item.path, item.sha256, item.size) == (None, None, None)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/passwd", "path is absolute"),
        ("jammy/../../etc/passwd", "path has a '..' segment"),
        ("..", "path has a '..' segment"),
        ("jammy/./squashfs", "path has a '.' segment"),
        ("jammy\\amd64\\squashfs", "path contains a backslash"),
        ("jammy/squash\x00fs", "path contains the control character '\\x00'"),
        ("jammy/\x1bsquashfs", "path contains the control character '\\x1b'"),
        ("jammy//squashfs", "path has an empty segment ('//' or a trailing '/')"),
        ("jammy/amd64/", "path has an empty segment ('//' or a trailing '/')"),
        ("", "path is empty"),
    ],
)
def test_unsafe_item_path_is_refused(path: str, reason: str) -> None:
    """Each kind of unsafe item path is refused at the item's path field."""
    err = _item_error(path=path)
    assert err.location == f"{SOURCE}: {ITEM}.path"
    assert err.reason == reason


def test_unsafe_index_entry_path_is_refused() -> None:
    """An index entry pointing outside the mirror is refused at its path."""
    doc = index_doc()
    doc["index"]["com.ubuntu.maas:stable:v3:download"]["path"] = "../secret.json"
    with pytest.raises(StreamFormatError) as caught:
        parse_index(encode(doc), source="streams/v1/index.json")
    assert (
        caught.value.location
        == "streams/v1/index.json: index[com.ubuntu.maas:stable:v3:download].path"
    )


def test_index_entry_without_path_is_kept_as_informational() -> None:
    """An index entry may omit path; it is kept with path None."""
    doc = index_doc()
    del doc["index"]["com.ubuntu.maas:stable:v3:download"]["path"]
    entry = parse_index(encode(doc)).entries["com.ubuntu.maas:stable:v3:download"]
    assert entry.path is None


def test_index_entry_products_must_be_strings() -> None:
    """The products list of an index entry holds only strings."""
    doc = index_doc()
    doc["index"]["com.ubuntu.maas:stable:v3:download"]["products"] = ["ok", 3]
    with pytest.raises(StreamFormatError) as caught:
        parse_index(encode(doc))
    assert caught.value.location == "index[com.ubuntu.maas:stable:v3:download].products"


def test_products_document_with_index_format_is_refused() -> None:
    """A products parser given format index:1.0 reports the format field."""
    doc = products_doc()
    doc["format"] = "index:1.0"
    with pytest.raises(StreamFormatError) as caught:
        parse_products(encode(doc), source=SOURCE)
    assert caught.value.location == f"{SOURCE}: format"
    assert caught.value.reason == "expected 'products:1.0', got 'index:1.0'"


def test_index_document_with_products_format_is_refused() -> None:
    """An index parser given format products:1.0 reports the format field."""
    doc = index_doc()
    doc["format"] = "products:1.0"
    with pytest.raises(StreamFormatError) as caught:
        parse_index(encode(doc))
    assert caught.value.location == "format"


def test_missing_format_is_refused() -> None:
    """A document without format is refused at format."""
    doc = products_doc()
    del doc["format"]
    with pytest.raises(StreamFormatError) as caught:
        parse_products(encode(doc))
    assert caught.value.reason == "missing; expected 'products:1.0'"


def test_malformed_json_names_source_line_and_column() -> None:
    """Broken JSON is reported with the source and the line and column of the fault."""
    with pytest.raises(StreamFormatError) as caught:
        parse_products(b'{\n "format": "products:1.0",\n "products": {,}\n}', source=SOURCE)
    assert caught.value.location == f"{SOURCE}: line 3 column 15"
    assert caught.value.reason.startswith("malformed JSON: ")


def test_nan_is_refused_as_not_json() -> None:
    """Python's NaN extension to JSON is refused."""
    with pytest.raises(StreamFormatError) as caught:
        parse_products(b'{"format": "products:1.0", "x": NaN}', source=SOURCE)
    assert caught.value.location == SOURCE
    assert caught.value.reason == "NaN is not valid JSON"


def test_duplicate_keys_are_refused() -> None:
    """A JSON object with a repeated key is ambiguous and refused."""
    with pytest.raises(StreamFormatError) as caught:
        parse_index(b'{"format": "index:1.0", "index": {}, "index": {}}')
    assert caught.value.reason == "duplicate key 'index' in a JSON object"


def test_bytes_that_are_not_utf8_are_refused() -> None:
    """Input bytes must be UTF-8; the error gives the byte offset."""
    with pytest.raises(StreamFormatError) as caught:
        parse_index(b'{"format": "\xff"}', source="index.json")
    assert caught.value.location == "index.json: byte 12"


def test_top_level_array_is_refused() -> None:
    """A document must be a JSON object."""
    with pytest.raises(StreamFormatError) as caught:
        parse_products(b"[]")
    assert str(caught.value) == "(document): expected an object, got an array"


@pytest.mark.parametrize(
    ("mutate", "location"),
    [
        (lambda d: d.update(products=[]), "products"),
        (lambda d: d["products"].update({JAMMY_GA: "x"}), f"products[{JAMMY_GA}]"),
        (lambda d: d["products"][JAMMY_GA].update(versions=3), f"products[{JAMMY_GA}].versions"),
        (
            lambda d: d["products"][JAMMY_GA]["versions"].update({"20250718": None}),
            f"products[{JAMMY_GA}].versions[20250718]",
        ),
        (
            lambda d: d["products"][JAMMY_GA]["versions"]["20250718"].update(items=[]),
            f"products[{JAMMY_GA}].versions[20250718].items",
        ),
        (
            lambda d: d["products"][JAMMY_GA]["versions"].update({"": {}}),
            f"products[{JAMMY_GA}].versions",
        ),
        (lambda d: d.pop("content_id"), "content_id"),
        (lambda d: d.update(datatype=1), "datatype"),
    ],
)
def test_wrong_types_are_reported_at_their_level(mutate: Any, location: str) -> None:
    """A wrongly typed or empty level is reported at that level's location."""
    doc = products_doc()
    mutate(doc)
    with pytest.raises(StreamFormatError) as caught:
        parse_products(encode(doc))
    assert caught.value.location == location


def test_mapping_input_with_non_json_value_is_refused() -> None:
    """A decoded mapping holding a non-JSON value is refused at that value."""
    doc = products_doc()
    squashfs_of(doc)["extra"] = {1, 2}
    with pytest.raises(StreamFormatError) as caught:
        parse_products(doc)
    assert caught.value.location == f"{ITEM}.extra"


def test_mapping_and_text_input_parse_like_bytes() -> None:
    """A decoded mapping, JSON text and JSON bytes give equal models."""
    doc = products_doc()
    assert (
        parse_products(doc) == parse_products(encode(doc).decode()) == parse_products(encode(doc))
    )


def test_stream_format_error_survives_pickling() -> None:
    """The error keeps location and reason across pickling (worker processes)."""
    err = pickle.loads(pickle.dumps(StreamFormatError("a.json: format", "bad")))
    assert (err.location, err.reason, str(err)) == ("a.json: format", "bad", "a.json: format: bad")
    assert isinstance(err, ValueError)


def test_aliases_are_merged_into_entries_without_overriding_own_keys() -> None:
    """An item naming an alias gets the aliased fields; keys it sets itself win."""
    doc = products_doc()
    doc["_aliases"] = {
        "crsn": {
            "us-east-1": {
                "region": "us-east-1",
                "ftype": "aliased",
                "endpoint": "https://ec2.example",
            }
        }
    }
    squashfs_of(doc)["crsn"] = "us-east-1"
    parsed = parse_products(encode(doc))
    item = parsed.products[JAMMY_GA].versions["20250718"].items["squashfs"]
    assert item.attrs["region"] == "us-east-1"
    assert item.attrs["endpoint"] == "https://ec2.example"
    assert item.attrs["ftype"] == "squashfs"
    assert "_aliases" not in parsed.attrs


def test_malformed_aliases_are_refused() -> None:
    """_aliases must be an object of objects of objects."""
    doc = products_doc()
    doc["_aliases"] = {"crsn": {"us-east-1": "not an object"}}
    with pytest.raises(StreamFormatError) as caught:
        parse_products(encode(doc))
    assert caught.value.location == "_aliases[crsn][us-east-1]"


@pytest.mark.parametrize("depth", [700, 5000])
def test_absurdly_nested_json_is_a_format_error(depth: int) -> None:
    """Nesting deep enough to exhaust the stack is reported, not raised as RecursionError."""
    raw = (
        '{"format": "products:1.0", "content_id": "c", "products": {}, "x": '
        + "[" * depth
        + "]" * depth
        + "}"
    )
    with pytest.raises(StreamFormatError) as caught:
        parse_products(raw, source="deep.json")
    assert str(caught.value) == "deep.json: JSON nested too deeply"
