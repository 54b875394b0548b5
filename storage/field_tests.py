"""SQL necessary conditions for a rule's field test (`core.rules.engine.Prefilter.field`), on both dialects.

The rule engine reads dates and numbers out of a customer's JSON attributes leniently (`_to_date`, `_to_number`
in core/rules/engine.py): ISO dates with anything after them, YYYYMMDD, Y/M/D and M-D with one- or two-digit
parts, ISO week dates, unicode digits, padding. The statement here must keep every customer the engine could
accept, so it decides only values of a few exact shapes (ASCII digits, nothing around them), where the month or
date the engine reads is known; a value of any other shape is kept and left to the engine. It drops:

* customers without the attribute, or with null or "" (the engine never accepts those);
* a date of a decided shape whose month (or date) is outside what the test accepts today;
* a plain decimal number (commas removed, as the engine does) outside the test's bound, widened by a margin.

The value is read as text, '/' turned into '-' (as the engine's fallback does) before the shape test.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    extract,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import ColumnElement

from core.rules.engine import DateSpan, NumberSpan, date_span, number_span
from storage import tables as t
from tagging.rules import Field

# Shapes of the '/'→'-' text the engine's month is known for. Y, M, D: one ASCII digit (M: the month's digits);
# '*': anything may follow. Python's date.fromisoformat reads the first ten characters "YYYY-MM-DD" or exactly
# "YYYYMMDD"; the engine's fallback splits on '-' into Y-M-D or M-D (year 2000).
ISO = "YYYY-MM-DD*"
BASIC = "YYYYMMDD"
SHORT = ("YYYY-M-D", "YYYY-M-DD", "YYYY-MM-D")
MONTH_DAY = ("M-D", "M-DD", "MM-D", "MM-DD")
MONTH_SHAPES = (ISO, BASIC, *SHORT, *MONTH_DAY)
NUMBER_REGEX = r"^-?[0-9]{1,15}(\.[0-9]{1,15})?$"  # PostgreSQL: short enough never to overflow a float
NOT_NUMBER_GLOB = "*[^0-9.-]*"  # SQLite: a text with any other character is left to the engine
MONTH_DAY_YEAR = 2000  # the year the engine gives a date without one


def field_ids(dialect: str, node: Field, today: date) -> Select[tuple[int]]:
    """SELECT customers.id for every customer the field test can accept on `today` (and some it will not)."""
    c = t.customers.c
    if node.name == "contract_end":
        span = date_span(node, today)
        if span.months:
            return select(c.id).where(extract("month", c.contract_end).in_(span.months))
        return select(c.id).where(c.contract_end >= span.first, c.contract_end <= span.last)
    stmt, value, kind = _attribute(dialect, node.name)
    present = and_(value.is_not(None), value != "")
    if node.compare is not None:
        return stmt.where(present, _number_test(dialect, value, kind, number_span(node.compare)))
    return stmt.where(present, _date_test(dialect, func.replace(value, "/", "-"), date_span(node, today)))


def _attribute(dialect: str, name: str) -> tuple[Select[tuple[int]], ColumnElement[Any], ColumnElement[Any] | None]:
    """(SELECT customers.id, the attribute's value, its JSON type or None). PostgreSQL: `->>` (text, null for
    JSON null). SQLite: a join with json_each, whose keys are decoded as Python decodes them (json_extract's path
    would miss a key stored with \\u escapes, as SQLAlchemy's default serialiser writes non-ASCII names)."""
    c = t.customers.c
    if dialect == "postgresql":
        return select(c.id), c.attributes.op("->>", return_type=String)(literal(name, String)), None
    each = func.json_each(c.attributes).table_valued("key", "value", "type").alias("attribute")
    stmt = select(c.id).select_from(t.customers.join(each, each.c.key == literal(name, String)))
    return stmt, each.c.value, each.c.type


def shape_pattern(dialect: str, shape: str, month: int | None = None) -> str | None:
    """A regular expression (PostgreSQL) or GLOB pattern (SQLite) for a shape; with `month`, only that month
    (None when the shape cannot hold it: one M digit and month 10-12)."""
    out: list[str] = []
    i = 0
    while i < len(shape):
        ch = shape[i]
        if ch == "M" and month is not None:
            width = len(shape[i:]) - len(shape[i:].lstrip("M"))
            text = f"{month:0{width}d}"
            if len(text) > width:
                return None
            out.append(text)
            i += width
            continue
        if ch in "YMD":
            out.append("[0-9]")
        elif ch == "*":
            out.append("" if dialect == "postgresql" else "*")
        else:
            out.append(ch)
        i += 1
    if dialect == "postgresql":
        return "".join(out) + ("" if shape.endswith("*") else "$")
    return "".join(out)


def _matches(dialect: str, text: ColumnElement[Any], patterns: list[str]) -> ColumnElement[bool]:
    """The text matches one of the patterns: one anchored alternation on PostgreSQL, GLOBs on SQLite."""
    if not patterns:
        return false()
    if dialect == "postgresql":
        return text.op("~", return_type=Boolean)(literal("^(?:" + "|".join(patterns) + ")", String))
    return or_(*(text.op("GLOB", return_type=Boolean)(literal(p, String)) for p in patterns))


def _date_test(dialect: str, text: ColumnElement[Any], span: DateSpan) -> ColumnElement[bool]:
    if span.months:
        decided = [p for s in MONTH_SHAPES if (p := shape_pattern(dialect, s)) is not None]
        wanted = [p for s in MONTH_SHAPES for m in span.months if (p := shape_pattern(dialect, s, m)) is not None]
        return or_(~_matches(dialect, text, decided), _matches(dialect, text, wanted))
    assert span.first is not None and span.last is not None
    low, high = _day_number(span.first), _day_number(span.last)
    iso = cast(func.replace(func.substr(text, 1, 10), "-", ""), Integer)
    whens: list[tuple[ColumnElement[bool], ColumnElement[bool]]] = [
        (_matches(dialect, text, [_pattern(dialect, ISO)]), iso.between(low, high)),
        (_matches(dialect, text, [_pattern(dialect, BASIC)]), cast(text, Integer).between(low, high)),
    ]
    if not span.first.year <= MONTH_DAY_YEAR <= span.last.year:  # M-D dates are in 2000: outside this window
        whens.append((_matches(dialect, text, [_pattern(dialect, s) for s in MONTH_DAY]), false()))
    return case(*whens, else_=true())  # CASE: the casts run only on the shapes they fit


def _number_test(
    dialect: str, value: ColumnElement[Any], kind: ColumnElement[Any] | None, span: NumberSpan
) -> ColumnElement[bool]:
    digits = func.replace(value, ",", "")
    if dialect == "postgresql":
        plain_text = digits.op("~", return_type=Boolean)(literal(NUMBER_REGEX, String))
        return case((plain_text, _within(cast(digits, Float), span)), else_=true())
    assert kind is not None
    plain = kind.in_(("integer", "real"))
    text_number = digits.op("NOT GLOB", return_type=Boolean)(literal(NOT_NUMBER_GLOB, String))
    return case((plain, _within(value, span)), (text_number, _within(cast(digits, Float), span)), else_=true())


def _within(number: ColumnElement[Any], span: NumberSpan) -> ColumnElement[bool]:
    tests = []
    if span.low is not None:
        tests.append(number >= literal(span.low, Float))  # a float bind, whatever the value's type (SQLite: a
    if span.high is not None:  # text bind would compare as text, above every number)
        tests.append(number <= literal(span.high, Float))
    return and_(true(), *tests)


def _pattern(dialect: str, shape: str) -> str:
    pattern = shape_pattern(dialect, shape)
    assert pattern is not None
    return pattern


def _day_number(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day
