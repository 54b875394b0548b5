"""Untrusted input at the boundary: JSON decoded within limits, and text fields checked before anything is stored.

Every route reads request bodies through `loads` and checks each text it keeps with `check_text`, so a
malformed body is refused with a reason naming the field and the limit before any work runs: no
RecursionError from deep nesting, no ValueError from a 5,000-digit number, no lone surrogate or NUL
reaching a database driver (PostgreSQL refuses NUL in text; no driver can encode a lone surrogate), and no
string longer than the column it goes to (`LIMITS`, kept equal to storage's column sizes by a test).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

MAX_DEPTH = 32  # nesting of arrays and objects; Bot Framework activities nest about 6 deep
MAX_INT_DIGITS = 40  # far beyond any id, count or timestamp; Python's own limit (4,300) raises deep inside
MAX_INT64 = 2**63 - 1  # BIGINT ids
MAX_INT32 = 2**31 - 1  # INTEGER columns (taxonomy versions)

# Column sizes of the stored text fields (storage/tables.py), by the name the boundary uses for them.
LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "user_id": 200,  # users.id, tag_events.actor, tag_assignments.assigned_by
        "display_name": 200,  # users.display_name
        "actor": 200,
        "region": 100,  # customers.region
        "tag": 200,  # tags.name, tags.name_key, tag_events.tag
        "dimension_key": 100,  # dimensions.key, tags.dimension
        "color": 20,  # tags.color
        "customer_name": 300,  # customers.name
        "conversation_id": 480,  # conversation_links.conversation_id (500) less the reference key prefix
        "message_key": 300,  # suggestions.message_key
        "dedupe_key": 500,  # inbound_dedup.unique_key (longer keys are stored hashed)
    }
)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# In JSON decoded from UTF-8, only these escapes can put a NUL or a surrogate into a string or key: raw control
# characters are invalid JSON and UTF-8 cannot encode a surrogate. (An escaped backslash before `u` also matches,
# which only costs the full check.)
_NUL_OR_SURROGATE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class InputError(ValueError):
    """A request value refused at the boundary: `field` names where, the message says what and the limit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def text_problem(value: str, limit: int | None = None) -> str | None:
    """Why `value` cannot be stored as text (NUL, lone surrogate, too long), or None when it can."""
    if "\x00" in value:
        return f"contains a NUL character (position {value.index(chr(0)) + 1}); remove it"
    found = _LONE_SURROGATE.search(value)
    if found is not None:
        return f"contains a lone surrogate (U+{ord(found.group()):04X} at position {found.start() + 1}); send UTF-8"
    if limit is not None and len(value) > limit:
        return f"is {len(value):,} characters long (limit {limit:,})"
    return None


def check_text(field: str, value: str, limit: int | None = None) -> str:
    """`value` unchanged, or InputError naming `field` when it holds NUL, a lone surrogate or exceeds `limit`."""
    problem = text_problem(value, limit)
    if problem is not None:
        raise InputError(field, problem)
    return value


def check_id(field: str, value: int, maximum: int = MAX_INT64) -> int:
    """A positive id within the database's integer range."""
    if not 1 <= value <= maximum:
        raise InputError(field, f"{value if len(str(value)) <= 40 else 'the number'} is outside 1..{maximum}")
    return value


def parse_id(field: str, raw: str, maximum: int = MAX_INT64) -> int:
    """A positive decimal id from text (path or query); InputError for anything else or out of range."""
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    if not raw.isascii() or not raw.isdigit():
        raise InputError(field, f"{shown!r} is not a positive integer")
    if len(raw.lstrip("0")) > len(str(maximum)):
        raise InputError(field, f"{shown} is outside 1..{maximum}")
    return check_id(field, int(raw), maximum)


def loads(data: bytes | bytearray | str, what: str = "the body") -> Any:
    """Decode JSON within limits: UTF-8, depth ≤ MAX_DEPTH, integers ≤ MAX_INT_DIGITS digits, finite numbers,
    no lone surrogates or NUL in any string or key. Raises InputError with the path of the first problem."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError("", f"{what} is not UTF-8 (bad byte at offset {exc.start})") from None
    else:
        text = data
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except InputError:
        raise
    except json.JSONDecodeError as exc:
        raise InputError("", f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError("", f"{what} nests arrays/objects too deeply (limit {MAX_DEPTH})") from None
    except ValueError as exc:  # anything else the decoder refuses is still this body's fault
        raise InputError("", f"{what} is not valid JSON: {str(exc)[:120]}") from None
    # The walk checks every string and the depth; a UTF-8 body without the escapes above, and with fewer
    # brackets than the depth limit, cannot fail it (most request bodies).
    if isinstance(data, str) or text.count("{") + text.count("[") > MAX_DEPTH or _NUL_OR_SURROGATE_ESCAPE.search(text):
        _walk(value, what)
    return value


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise InputError("", f"a number has {len(digits):,} digits (limit {MAX_INT_DIGITS})")
    return int(digits)


def _float(digits: str) -> float:
    if len(digits) > 100:
        raise InputError("", f"a number is written with {len(digits):,} characters (limit 100)")
    value = float(digits)
    if not math.isfinite(value):
        raise InputError("", f"the number {digits[:40]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise InputError("", f"{name} is not a JSON number; send a finite number or null")


def _walk(root: Any, what: str) -> None:
    """Depth, strings and keys checked iteratively (no recursion however deep the value)."""
    stack: list[tuple[Any, str, int]] = [(root, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise InputError(path, f"{what} nests arrays/objects deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    where = f"{path}.{key}" if path else str(key)
                    problem = text_problem(key)
                    if problem is not None:
                        raise InputError(_shown(where), f"a key {problem}")
                    stack.append((item, where, depth + 1))
            else:
                stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                raise InputError(_shown(path), problem)


def _shown(path: str) -> str:
    """A field path safe to echo: printable, surrogates escaped, clipped."""
    clean = path.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return clean if len(clean) <= 120 else clean[:120] + "…"
