"""Spreadsheet formula injection: which text a spreadsheet program would run as a formula, and how to defuse it.

One rule for every cell that can reach a spreadsheet (customer import cells, tag and dimension names,
CSV exports): after dropping leading white space and invisible characters (zero-width spaces, joiners,
BOMs, direction marks: Unicode category Cf), a value is formula-looking when it starts with `=`, `+`,
`-` or `@`, or their full-width forms `＝ ＋ － ＠`, or when the raw value starts with a tab or carriage
return (spreadsheets drop those and read what follows). A plain number such as `-5`, `+3` or `-12.50`
is not formula-looking: spreadsheets read it as the number it is.
"""

from __future__ import annotations

import re
import unicodedata

# ASCII and full-width (U+FF0B, U+FF0D, U+FF1D, U+FF20) formula starters, plus the minus sign U+2212.
FORMULA_STARTS = frozenset("=+-@＝＋－＠−")
RAW_STARTS = ("\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def _visible_start(value: str) -> str:
    """`value` without its leading white space and invisible (format) characters."""
    for index, ch in enumerate(value):
        if not ch.isspace() and unicodedata.category(ch) != "Cf":
            return value[index:]
    return ""


def formula_start(value: str) -> str | None:
    """The character that makes `value` formula-looking (as it appears in `value`), or None when it is safe."""
    if value.startswith(RAW_STARTS):
        rest = _visible_start(value)
        if rest and not _PLAIN_NUMBER.fullmatch(rest):
            return value[0]
    visible = _visible_start(value)
    if not visible or visible[0] not in FORMULA_STARTS:
        return None
    if _PLAIN_NUMBER.fullmatch(visible):
        return None
    return visible[0]


def describe_start(ch: str) -> str:
    """How a formula starter is named in messages: printable ones quoted, the others by code point."""
    return f"'{ch}'" if ch.isprintable() and not ch.isspace() else f"U+{ord(ch):04X}"


def defuse(value: str) -> str:
    """`value` made safe for a CSV cell: a formula-looking value gets a leading apostrophe."""
    return "'" + value if formula_start(value) is not None else value
