"""The blockbuster guard really catches blocking calls made by our packages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from blockbuster import BlockingError

from common import errors


async def test_a_blocking_read_in_our_code_fails_the_test(tmp_path: Path) -> None:
    """A synchronous file read from a coroutine in common/ raises BlockingError."""
    target = tmp_path / "f"
    target.write_bytes(b"x")
    code = compile("with open(path, 'rb') as f:\n    f.read()", errors.__file__, "exec")
    with pytest.raises(BlockingError):
        exec(code, {"path": str(target), "__name__": "common.errors"})
    await asyncio.sleep(0)
