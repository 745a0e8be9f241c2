"""Download plans de-duplicate by sha256 and skip what is already held."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simplestreams import (
    Blob,
    FlatItem,
    ProductList,
    Selection,
    StreamFormatError,
    flatten,
    newest_versions,
    plan_downloads,
    select_images,
)

SHARED_SQUASHFS = "edbd57a3d69392e6942ef4a35bc7c062cc234b9d1d48d99bf3e15401ceda0d46"
ARM64_KERNEL = "260d82490954ecfb7c2d35fe5aa065b0eee2ae1d664bf70745bb955c7909f8b6"


def _flat(
    product: str, item: str, path: str | None, sha256: str | None, size: int | None
) -> FlatItem:
    return FlatItem(
        content_id="c",
        product_name=product,
        version_name="1",
        item_name=item,
        path=path,
        sha256=sha256,
        size=size,
        fields={},
    )


def _jammy_amd64(products: ProductList) -> list[FlatItem]:
    chosen = select_images(newest_versions(products), [Selection("ubuntu", "jammy", ("amd64",))])
    return flatten(chosen)


def test_squashfs_shared_by_two_kernel_products_is_fetched_once(
    ubuntu_with_hwe: ProductList,
) -> None:
    """ga-22.04 and hwe-22.04 share one squashfs and manifest: 8 items, 6 blobs."""
    items = _jammy_amd64(ubuntu_with_hwe)
    assert len(items) == 8
    plan = plan_downloads(items, present=set())
    assert len(plan.to_fetch) == 6
    squashfs = [b for b in plan.to_fetch if b.sha256 == SHARED_SQUASHFS]
    assert squashfs == [Blob(SHARED_SQUASHFS, 455462912, ("jammy/amd64/20250718/squashfs",))]
    # initrd+kernel of each product, then the shared manifest and squashfs, once each.
    assert plan.total_bytes == (115876578 + 11708744 + 180542978 + 14969224 + 17741 + 455462912)


def test_same_blob_under_two_paths_lists_both(ubuntu: ProductList) -> None:
    """The arm64 kernel repeated across two serials is one blob with both paths."""
    plan = plan_downloads(flatten(ubuntu), present=())
    (kernel,) = [b for b in plan.to_fetch if b.sha256 == ARM64_KERNEL]
    assert kernel.paths == (
        "jammy/arm64/20250808/ga-22.04/generic/boot-kernel",
        "jammy/arm64/20250812/ga-22.04/generic/boot-kernel",
    )
    assert kernel.size == 15231417


def test_present_blobs_are_not_fetched_with_a_container_or_a_predicate(
    ubuntu_with_hwe: ProductList,
) -> None:
    """Blobs already held move to already_present, whether told by a set or a function."""
    items = _jammy_amd64(ubuntu_with_hwe)
    by_set = plan_downloads(items, present={SHARED_SQUASHFS})
    by_function = plan_downloads(items, present=lambda sha: sha == SHARED_SQUASHFS)
    assert by_set == by_function
    assert [b.sha256 for b in by_set.already_present] == [SHARED_SQUASHFS]
    assert SHARED_SQUASHFS not in {b.sha256 for b in by_set.to_fetch}
    assert by_set.present_bytes == 455462912


def test_to_fetch_is_ordered_by_path(ubuntu: ProductList) -> None:
    """Blobs come in the order of their first path, so runs read alike in the logs."""
    plan = plan_downloads(flatten(ubuntu), present=set())
    firsts = [b.paths[0] for b in plan.to_fetch]
    assert firsts == sorted(firsts)
    assert firsts[0] == "jammy/amd64/20250615/ga-22.04/generic/boot-initrd"


def test_items_without_a_path_are_ignored() -> None:
    """Informational items contribute nothing to the plan."""
    plan = plan_downloads([_flat("p", "note", None, None, None)], present=set())
    assert plan.to_fetch == ()
    assert plan.total_bytes == 0


def test_one_sha256_with_two_sizes_is_a_format_error() -> None:
    """Two items claiming one sha256 with different sizes cannot both be right."""
    items = [_flat("a", "f", "a/f", "1" * 64, 10), _flat("b", "f", "b/f", "1" * 64, 11)]
    with pytest.raises(StreamFormatError) as caught:
        plan_downloads(items, present=set())
    assert caught.value.location == "c: products[b].versions[1].items[f].size"
    assert "has size 11 here but 10 at c: products[a]" in caught.value.reason


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.sampled_from(["x/1", "x/2", "y/3"])), max_size=12
    ),
    st.sets(st.sampled_from("abcd")),
)
def test_every_wanted_blob_is_planned_exactly_once(
    picks: list[tuple[str, str]], held: set[str]
) -> None:
    """Each sha256 appears once, in to_fetch unless held, with every path that carries it."""
    items = [
        _flat("p", str(i), path, digit * 64, ord(digit)) for i, (digit, path) in enumerate(picks)
    ]
    plan = plan_downloads(items, present={d * 64 for d in held})
    blobs = plan.to_fetch + plan.already_present
    assert sorted(b.sha256 for b in blobs) == sorted({d * 64 for d, _ in picks})
    assert all(b.sha256[0] not in held for b in plan.to_fetch)
    for blob in blobs:
        assert blob.paths == tuple(sorted({p for d, p in picks if d * 64 == blob.sha256}))
