"""The rollback guard per products document: an older date or a version going back refuses it."""

from __future__ import annotations

from region.db.imported_products import ImportedProducts
from region.images.catalogue import ProductsMark
from region.images.steps import products_rollback

URL = "http://up/streams/v1/v3.sjson"
NOV = "Sat, 01 Nov 2025 00:00:00 +0000"
JUL = "Fri, 18 Jul 2025 00:00:00 +0000"


def mark(updated: str | None, **newest: str) -> ProductsMark:
    """A products document as signed: its date and each product's newest version."""
    return ProductsMark(content_id="v3", url=URL, updated=updated, newest=newest)


def test_nothing_imported_before_is_never_a_rollback() -> None:
    """The first import of a document has nothing to compare with."""
    assert products_rollback(mark(JUL, p="20250718"), None) is None


def test_an_older_document_is_a_rollback_naming_both_dates() -> None:
    """A document dated July after one dated November was imported is refused."""
    rollback = products_rollback(
        mark(JUL, p="20251101"), ImportedProducts(updated=NOV, versions={"p": "20251101"})
    )
    assert rollback is not None
    assert rollback.fields == {"updated": JUL, "last_imported": NOV}
    assert URL in rollback.message


def test_a_product_version_going_back_is_a_rollback_even_in_a_newer_document() -> None:
    """Dated now but holding 20250718 where 20251101 was imported: refused, naming the product."""
    rollback = products_rollback(
        mark(NOV, p="20250718", q="20251101"),
        ImportedProducts(updated=JUL, versions={"p": "20251101", "q": "20251101"}),
    )
    assert rollback is not None
    assert rollback.fields["product"] == "p"
    assert (rollback.fields["version"], rollback.fields["last_imported"]) == (
        "20250718",
        "20251101",
    )


def test_new_products_vanished_products_and_unreadable_dates_are_no_rollback() -> None:
    """Only products both documents list are compared; an unreadable date is not compared."""
    last = ImportedProducts(updated="yesterday", versions={"gone": "2", "p": "1"})
    assert products_rollback(mark("today", p="1", new="0"), last) is None
    assert products_rollback(mark(None, p="2"), last) is None
