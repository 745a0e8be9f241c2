"""``import.max_item_size``: the largest item an upstream may claim, 64 GiB unless configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from region.config import load_config


def test_the_default_largest_item_is_64_gib() -> None:
    """Without the key, items up to 64 GiB are accepted."""
    assert load_config(None).max_item_size == 64 << 30


def test_the_key_sets_it_and_a_size_below_one_byte_is_refused(tmp_path: Path) -> None:
    """A whole number of bytes sets the limit; 0 is refused naming the key."""
    path = tmp_path / "regiond.toml"
    path.write_text("[import]\nmax_item_size = 1_000_000\n", encoding="utf-8")
    assert load_config(path).max_item_size == 1_000_000
    path.write_text("[import]\nmax_item_size = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"import\.max_item_size: must be a whole number ≥ 1"):
        load_config(path)
