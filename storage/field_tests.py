"""SQL necessary conditions for a rule's field test (`core.rules.engine.Prefilter.field`), on both dialects.

The rule engine reads dates and numbers out of a customer's JSON attributes leniently (`_to_date`, `_to_number`
in core/rules/engine.py): ISO dates with anything after them, YYYYMMDD, Y/M/D and M-D with one- or two-digit
parts, ISO week dates, unicode digits, padding. The statement here must keep every customer the engine could
accept, so it decides only values of a few exact shapes (ASCII digits, nothing around them), where the month or
date the engine reads is known; a value of any other shape is kept and left to the engine. It drops:

* customers without the attribute, or with null or "" (the engine never accepts those);
* a date of a decided shape whose month (or date) is outside what the test accepts today;
* a plain decimal number (commas removed, as the engine does) outside the test's bound, widened by a margin.

The value is read as text, '/' turned into '-' (as the engine's fallback does) before the shape test. A shape
writes each ASCII digit as 0: PostgreSQL compares translate(value, '123456789', '000000000') with it, SQLite
matches a GLOB with [0-9] for each 0. One CASE tests the shapes in turn and keeps any other non-empty value.
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

# Shapes of the '/'→'-' text (every ASCII digit written 0) whose month the engine reads at known characters:
# (shapes, 1-based start, width). date.fromisoformat reads the first ten characters "YYYY-MM-DD" (anything may
# follow) or exactly "YYYYMMDD"; the engine's fallback splits on '-' into Y-M-D or M-D (in the year 2000).
ISO = "0000-00-00"  # a prefix
BASIC = "00000000"
MONTH_AT: tuple[tuple[tuple[str, ...], int, int], ...] = (
    ((BASIC,), 5, 2),
    (("0000-0-0", "0000-0-00"), 6, 1),
    (("0000-00-0",), 6, 2),
    (("0-0", "0-00"), 1, 1),
    (("00-0", "00-00"), 1, 2),
)
MONTH_DAY = ("0-0", "0-00", "00-0", "00-00")
NUMBER_REGEX = r"^-?[0-9]{1,15}(\.[0-9]{1,15})?$"  # PostgreSQL: short enough never to overflow a float
NOT_NUMBER_GLOB = "*[^0-9.-]*"  # SQLite: a text with any other character is left to the engine
MONTH_DAY_YEAR = 2000  # the year the engine gives a date without one


def field_ids(dialect: str, node: Field, today: date) -> Select[Any]:
    """SELECT customers.id for every customer the field test can accept on `today` (and some it will not)."""
    c = t.customers.c
    if node.name == "contract_end":
        span = date_span(node, today)
        if span.months:
            return select(c.id).where(extract("month", c.contract_end).in_(span.months))
        return select(c.id).where(c.contract_end >= span.first, c.contract_end <= span.last)
    stmt, value, kind = _attribute(dialect, node.name)
    if node.compare is not None:
        present = and_(value.is_not(None), value != "")
        return stmt.where(present, _number_test(dialect, value, kind, number_span(node.compare)))
    return stmt.where(_date_test(dialect, func.replace(value, "/", "-"), date_span(node, today)))


def _attribute(dialect: str, name: str) -> tuple[Select[Any], ColumnElement[Any], ColumnElement[Any] | None]:
    """(SELECT customers.id, the attribute's value, its JSON type or None). PostgreSQL: `->>` (text, null for
    JSON null). SQLite: a join with json_each, whose keys are decoded as Python decodes them (json_extract's path
    would miss a key stored with \\u escapes, as SQLAlchemy's default serialiser writes non-ASCII names)."""
    c = t.customers.c
    if dialect == "postgresql":
        return select(c.id), c.attributes.op("->>", return_type=String)(literal(name, String)), None
    each = func.json_each(c.attributes).table_valued("key", "value", "type").alias("attribute")
    stmt = select(c.id).select_from(t.customers.join(each, each.c.key == literal(name, String)))
    return stmt, each.c.value, each.c.type


def has_shape(dialect: str, text: ColumnElement[Any], shapes: tuple[str, ...], prefix: bool = False) -> Any:
    """The text has one of the shapes (each 0 an ASCII digit, the rest as written), or begins with it.
    PostgreSQL: translate the digits to 0 and compare; SQLite (no translate): GLOB, [0-9] for each 0."""
    if dialect == "postgresql":
        form = func.translate(text, "123456789", "000000000")
        if prefix:
            form = func.substr(form, 1, max(len(s) for s in shapes))
        return form.in_(shapes) if len(shapes) > 1 else form == shapes[0]
    globs = [s.replace("0", "[0-9]") + ("*" if prefix else "") for s in shapes]
    return or_(*(text.op("GLOB", return_type=Boolean)(literal(g, String)) for g in globs))


def _date_test(dialect: str, text: ColumnElement[Any], span: DateSpan) -> ColumnElement[bool]:
    """A CASE over the value's shape: a decided shape tests its month (or date), any other non-empty value is
    kept. CASE also keeps the integer casts off the values they do not fit (PostgreSQL would raise)."""
    iso = has_shape(dialect, text, (ISO,), prefix=True)
    whens: list[tuple[ColumnElement[bool], ColumnElement[bool]]] = []
    if span.months:
        whens.append((iso, func.substr(text, 6, 2).in_(_month_texts(span.months, 2))))
        for shapes, start, width in MONTH_AT:
            month = func.substr(text, start, width)
            whens.append((has_shape(dialect, text, shapes), _in_texts(month, _month_texts(span.months, width))))
    else:
        assert span.first is not None and span.last is not None
        low, high = _day_number(span.first), _day_number(span.last)
        whens.append((iso, cast(func.replace(func.substr(text, 1, 10), "-", ""), Integer).between(low, high)))
        whens.append((has_shape(dialect, text, (BASIC,)), cast(text, Integer).between(low, high)))
        if not span.first.year <= MONTH_DAY_YEAR <= span.last.year:  # M-D dates are in 2000: outside the window
            whens.append((has_shape(dialect, text, MONTH_DAY), false()))
    return case(*whens, else_=text != "")


def _month_texts(months: tuple[int, ...], width: int) -> list[str]:
    """How the months are written in `width` digits (a one-digit field cannot hold 10-12)."""
    return [text for m in months if len(text := f"{m:0{width}d}") == width]


def _in_texts(value: ColumnElement[Any], texts: list[str]) -> ColumnElement[bool]:
    return value.in_(texts) if texts else false()


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


def _day_number(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day
