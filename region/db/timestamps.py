"""Times as the database stores them: naive UTC, ISO 8601 with microseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The current UTC time as stored in the database."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def utc_text(value: str) -> str:
    """An ISO 8601 time as stored (naive UTC); ValueError if it is not one."""
    when = datetime.fromisoformat(value)
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.isoformat(timespec="microseconds")
