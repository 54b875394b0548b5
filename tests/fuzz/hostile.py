"""Hypothesis strategies for hostile request bodies: odd values, broken JSON, mutated real payloads.

JSON text is built with placeholders for what `json.dumps` cannot write (a 5,000-digit integer, deep
nesting, NaN), so one strategy yields both well-formed and malformed bodies.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

# Placeholder strings swapped for raw JSON text after dumping.
RAW: dict[str, str] = {
    "\ue000BIGINT": "9" * 5000,
    "\ue000NEGBIG": "-" + "1" * 4400,
    "\ue000INT63": str(2**63),
    "\ue000DEEP": "[" * 1000 + "]" * 1000,
    "\ue000DEEPOBJ": '{"a":' * 600 + "1" + "}" * 600,
    "\ue000NAN": "NaN",
    "\ue000INF": "1e999",
    "\ue000LONGFLOAT": "0." + "1" * 5000,
    "\ue000SURROGATE": '"\\ud800"',
    "\ue000LOWSURROGATE": '"x\\udfffy"',
    "\ue000NUL": '"a\\u0000b"',
}

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "ABC公司\x00",
        "\ud800",
        "名\udfff",
        "x" * 201,
        "客" * 301,
        "y" * 501,
        "z" * 5000,
        "9" * 5000,
        "9223372036854775808",
        "2147483648",
        "-1",
        "0",
        "１２３",
        "2001-13-45",
        "<at>客标</at>" * 3,
        "=cmd|' /C calc'!A0",
        "../../etc/passwd",
        "%00",
        "\u202e\u200b",
        "a\r\nb",
        "tag ABC公司 +VIP客户",
        "绑定 ABC公司",
        "suggest 报价 退款 投诉",
    ]
)
HOSTILE_INT = st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30])
RAW_VALUE = st.sampled_from(sorted(RAW))

SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    HOSTILE_TEXT,
    HOSTILE_INT,
    RAW_VALUE,
)
JSON_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """JSON bytes of `value`, with every RAW placeholder replaced by its raw text."""
    text = json.dumps(value, ensure_ascii=True)
    for marker, raw in RAW.items():
        quoted = json.dumps(marker, ensure_ascii=True)
        text = text.replace(quoted, raw)
    return text.encode("utf-8")


GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"{",
            b'{"type": "message"',
            b"\xff\xfe{}",
            b"[" * 100_000,
            b'{"a":' * 50_000,
            b"null",
            b'"just a string"',
            b"1" * 6000,
            b'{"type": "message", "type": "invoke"}',
        ]
    ),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) inside a JSON value, the root excluded."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((*prefix, key))
            out.extend(paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.append((*prefix, i))
            out.extend(paths(item, (*prefix, i)))
    return out


def mutate(base: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    """A copy of `base` with the value at `path` replaced, deleted, or given an extra key."""
    data = copy.deepcopy(base)
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "delete":
        del parent[last]
    elif how == "extra" and isinstance(parent[last], dict):
        parent[last]["\ue000extra" if not isinstance(value, str) else value[:20] or "k"] = value
    else:
        parent[last] = value
    return data


@st.composite
def mutated(draw: st.DrawFn, bases: list[Any], keep: frozenset[str] = frozenset()) -> Any:
    """One of `bases` with one to three of its values replaced by hostile ones (top-level `keep` keys untouched)."""
    data = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 3))):
        candidates = [p for p in paths(data) if p[0] not in keep]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        how = draw(st.sampled_from(["replace", "replace", "replace", "delete", "extra"]))
        data = mutate(data, path, how, draw(JSON_VALUE))
    return data
