"""Small JSON state files in the rack's data directory (written with ``write_atomic``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.ops.logging import get_logger

log = get_logger("rack.files")


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (blocking); ``{}`` when missing or damaged (logged)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("rack_state_unreadable", path=str(path), error=str(exc))
        return {}
    return data if isinstance(data, dict) else {}


def dump_json(value: object) -> bytes:
    """``value`` as stable, readable JSON bytes (sorted keys, final newline)."""
    return json.dumps(value, indent=1, sort_keys=True).encode() + b"\n"
