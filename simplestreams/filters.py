"""The ``sstream-mirror`` item filter grammar over flattened item fields.

``key=value`` and ``key!=value`` compare strings exactly; ``key~regex`` and
``key!~regex`` use :func:`re.search` (unanchored). A key missing from the
fields counts as the empty string, so ``release~noble`` never matches a
bootloader item, which has no ``release``. Keys may also hold ``-`` and ``.``
(``bootloader-type=uefi``), which upstream's grammar cannot express.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Operator = Literal["=", "!=", "~", "!~"]

# Spaces around the operator are allowed, as upstream allows them.
_GRAMMAR = re.compile(r"(?P<key>[\w.-]+) *(?P<op>!=|!~|=|~) *(?P<value>.*)", re.DOTALL)


_OPERATORS: dict[str, Operator] = {"=": "=", "!=": "!=", "~": "~", "!~": "!~"}


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """One filter; built by :meth:`ItemFilter.parse` or directly from its parts.

    Raises ValueError when ``op`` is unknown or a regex does not compile.
    """

    key: str
    op: Operator
    value: str
    pattern: re.Pattern[str] | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise ValueError(f"bad filter {str(self)!r}: unknown operator {self.op!r}")
        if self.op in ("~", "!~"):
            try:
                object.__setattr__(self, "pattern", re.compile(self.value))
            except re.error as exc:
                raise ValueError(
                    f"bad filter {str(self)!r}: invalid regular expression: {exc}"
                ) from exc

    @classmethod
    def parse(cls, text: str) -> ItemFilter:
        """Parse ``key=value``, ``key!=value``, ``key~regex`` or ``key!~regex``.

        Raises ValueError naming the filter when it does not fit the grammar
        or its regular expression does not compile.
        """
        match = _GRAMMAR.fullmatch(text)
        if match is None:
            raise ValueError(
                f"bad filter {text!r}: expected key=value, key!=value, key~regex or key!~regex"
            )
        return cls(match["key"], _OPERATORS[match["op"]], match["value"])

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Tell whether the flattened ``fields`` pass this filter."""
        actual = fields.get(self.key, "")
        if self.pattern is None:
            hit = actual == self.value
        else:
            hit = self.pattern.search(actual) is not None
        return hit != self.op.startswith("!")

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def parse_filters(texts: Iterable[str]) -> tuple[ItemFilter, ...]:
    """Parse each text with :meth:`ItemFilter.parse`; raises ValueError on the first bad one."""
    return tuple(ItemFilter.parse(text) for text in texts)


def matches_all(filters: Iterable[ItemFilter], fields: Mapping[str, str]) -> bool:
    """Tell whether ``fields`` pass every filter (no filters: always true)."""
    return all(f.matches(fields) for f in filters)
