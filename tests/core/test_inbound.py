"""core.inbound: JSON decoded within limits, text checked for NUL, lone surrogates and column sizes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column

from core.inbound import LIMITS, MAX_DEPTH, MAX_INT32, MAX_INT64, InputError, check_text, loads, parse_id
from storage import tables as t


def test_ordinary_json_decodes_unchanged() -> None:
    assert loads(b'{"a": [1, 2.5, "\\u5ba2", null, true], "b": {"c": -3}}') == {
        "a": [1, 2.5, "客", None, True],
        "b": {"c": -3},
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 1000 + b"]" * 1000, "nests"),
        (b"[" * 100_000, "nests"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), f"deeper than {MAX_DEPTH}"),
        (b'{"n": ' + b"9" * 5000 + b"}", "5,000 digits"),
        (b"-" + b"1" * 41, "digits"),
        (b'{"n": NaN}', "NaN"),
        (b'{"n": -Infinity}', "-Infinity"),
        (b'{"n": 1e999}', "out of range"),
        (b'{"n": 0.' + b"1" * 200 + b"}", "characters"),
        (b'{"id": "a\\ud800"}', "id: contains a lone surrogate (U+D800"),
        (b'{"x": ["ok", "b\\udfffc"]}', "x[1]: contains a lone surrogate"),
        (b'{"a\\ud800": 1}', "a key contains a lone surrogate"),
        (b'{"q": "a\\u0000b"}', "q: contains a NUL character (position 2)"),
        (b'{"id": "a\\uD800"}', "id: contains a lone surrogate (U+D800"),
        (b'{"k": {"a\\u0000": 1}}', "a key contains a NUL character"),
        (b'{"t": "\\ud83d\\ude00 ok", "u": "\\uDBFF"}', "u: contains a lone surrogate (U+DBFF"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_hostile_json_is_refused_with_the_reason(body: bytes, words: str) -> None:
    with pytest.raises(InputError, match=None) as caught:
        loads(body)
    assert words in str(caught.value)


def test_text_refused_even_when_the_body_is_already_text() -> None:
    with pytest.raises(InputError, match="lone surrogate"):
        loads('{"a": "\udc80"}')  # a str can hold a surrogate without any escape


def test_an_escaped_backslash_before_u_is_ordinary_text() -> None:
    assert loads(b'{"a": "\\\\u0000", "b": "\\ud83d\\ude00"}') == {"a": "\\u0000", "b": "\U0001f600"}


def test_depth_at_the_limit_is_accepted() -> None:
    body = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads(body) is not None


@pytest.mark.parametrize(
    ("value", "limit", "reason"),
    [("a\x00", None, "NUL"), ("\udc80", None, "lone surrogate"), ("x" * 201, 200, "201 characters long (limit 200)")],
)
def test_check_text_names_the_field_and_the_limit(value: str, limit: int | None, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        check_text("from.name", value, limit)
    assert caught.value.field == "from.name"
    assert reason in str(caught.value)
    assert check_text("from.name", "王丽", 200) == "王丽"


@pytest.mark.parametrize(
    ("raw", "maximum", "ok"),
    [
        ("1", MAX_INT64, True),
        (str(MAX_INT64), MAX_INT64, True),
        (str(MAX_INT64 + 1), MAX_INT64, False),
        (str(MAX_INT32 + 1), MAX_INT32, False),
        ("0", MAX_INT64, False),
        ("9" * 5000, MAX_INT64, False),
        ("00000000000000000000000001", MAX_INT64, True),
        ("１", MAX_INT64, False),
        ("-1", MAX_INT64, False),
        ("1.0", MAX_INT64, False),
    ],
)
def test_parse_id_stays_inside_the_database_range(raw: str, maximum: int, ok: bool) -> None:
    if ok:
        assert parse_id("customer id", raw, maximum) == int(raw)
    else:
        with pytest.raises(InputError, match="customer id"):
            parse_id("customer id", raw, maximum)


COLUMNS = {
    "user_id": [t.users.c.id, t.tag_events.c.actor, t.tag_assignments.c.assigned_by],
    "display_name": [t.users.c.display_name],
    "actor": [t.tag_events.c.actor, t.suggestions.c.decided_by],
    "region": [t.customers.c.region],
    "tag": [t.tags.c.name, t.tags.c.name_key, t.tag_events.c.tag, t.tag_assignments.c.tag],
    "dimension_key": [t.dimensions.c.key, t.tags.c.dimension, t.tag_assignments.c.dimension],
    "color": [t.tags.c.color],
    "customer_name": [t.customers.c.name],
    "message_key": [t.suggestions.c.message_key],
    "dedupe_key": [t.inbound_dedup.c.unique_key],
}


def _length(column: Column[Any]) -> int:
    length = getattr(column.type, "length", None)
    assert isinstance(length, int), column
    return length


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limits_fit_the_columns_they_guard(name: str) -> None:
    if name == "conversation_id":  # stored bare in links and prefixed with "conversation:" in references
        assert LIMITS[name] <= _length(t.conversation_links.c.conversation_id)
        assert LIMITS[name] + len("conversation:") <= _length(t.conversation_references.c.user_key)
        return
    for column in COLUMNS[name]:
        assert LIMITS[name] <= _length(column), column
    assert LIMITS[name] == _length(COLUMNS[name][0])
