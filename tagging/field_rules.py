"""CRM field rules (pure): a CRM field's value maps to a tag by a list of values or by a numeric range."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tagging.normaliser import name_key

_NUMBER = r"[+-]?\d[\d_,]*(?:\.\d+)?"
_SPAN = re.compile(rf"\s*({_NUMBER}|[^.]*?)\s*\.\.\s*({_NUMBER}|.*?)\s*")
_SIDE = re.compile(r"\s*(>=|<=|>|<)\s*(.*?)\s*")
_VALUE = re.compile(r"[¥￥$€£]?\s*([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*(?:元|CNY|USD|EUR)?")


class RangeError(ValueError):
    """A range written wrongly; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a range; `closed` means the end value itself belongs to the range."""

    value: Decimal
    closed: bool


@dataclass(frozen=True, slots=True)
class FieldRule:
    """`tag` applies when the field's value is one of `values` (normalised), or a number inside the range."""

    tag: str
    values: tuple[str, ...] = ()
    low: Bound | None = None  # None: no lower end
    high: Bound | None = None  # None: no upper end
    range_text: str = ""  # the range as written ("" for a value list)

    @property
    def is_range(self) -> bool:
        return bool(self.range_text)

    def matches(self, raw: str) -> bool:
        """Whether a CRM value (as text) satisfies this rule."""
        if not self.is_range:
            return name_key(raw) in {name_key(v) for v in self.values} if raw.strip() else False
        number = crm_number(raw)
        if number is None:
            return False
        if self.low is not None and (number < self.low.value or (number == self.low.value and not self.low.closed)):
            return False
        return not (
            self.high is not None and (number > self.high.value or (number == self.high.value and not self.high.closed))
        )

    def to_data(self) -> dict[str, Any]:
        """The rule as written in a taxonomy file."""
        if self.is_range:
            return {"range": self.range_text, "tag": self.tag}
        return {"values": list(self.values), "tag": self.tag}


def parse_number(text: str) -> Decimal:
    """A bound such as `10000000`, `10_000_000` or `10,000,000`; RangeError when it is not a number."""
    if not re.fullmatch(_NUMBER, text.strip()):
        raise RangeError(f"bound {text.strip()!r} is not a number")
    return Decimal(text.strip().replace("_", "").replace(",", ""))


def parse_range(text: str) -> tuple[Bound | None, Bound | None]:
    """`>= N`, `> N`, `<= N`, `< N`, or `A..B` (A included, B excluded) into its two ends."""
    side = _SIDE.fullmatch(text)
    if side is not None:
        op, raw = side.groups()
        number = parse_number(raw)
        if op.startswith(">"):
            return Bound(number, op == ">="), None
        return None, Bound(number, op == "<=")
    span = _SPAN.fullmatch(text)
    if span is None:
        raise RangeError(
            f"range {text.strip()!r} is not one of '>= N', '> N', '<= N', '< N' or 'A..B' (A included, B excluded)"
        )
    low, high = parse_number(span.group(1)), parse_number(span.group(2))
    if low >= high:
        raise RangeError(f"range {text.strip()!r} is empty: the lower end must be below the upper end")
    return Bound(low, True), Bound(high, False)


def overlap(a: FieldRule, b: FieldRule) -> bool:
    """Whether two range rules share at least one number."""
    low = _later_low(a.low, b.low)
    high = _earlier_high(a.high, b.high)
    if low is None or high is None:
        return True
    return low.value < high.value or (low.value == high.value and low.closed and high.closed)


def _later_low(a: Bound | None, b: Bound | None) -> Bound | None:
    if a is None or b is None:
        return a or b
    if a.value != b.value:
        return a if a.value > b.value else b
    return a if not a.closed else b  # an open end starts later


def _earlier_high(a: Bound | None, b: Bound | None) -> Bound | None:
    if a is None or b is None:
        return a or b
    if a.value != b.value:
        return a if a.value < b.value else b
    return a if not a.closed else b


def crm_number(raw: str) -> Decimal | None:
    """A CRM value read as a number (`10000000`, `1,000,000.00`, `¥5000`, `1e+16`); None when it is not one."""
    match = _VALUE.fullmatch(raw.strip().replace(",", "").replace("_", ""))
    if match is None:
        return None
    try:
        return Decimal(match.group(1))
    except InvalidOperation:
        return None
