"""Labelled history import (`kebiao learn import`): one {"text": ..., "tags": [...]} per line.

Listed tags are positives; every other tag of the taxonomy in force is a negative for that text. The file is
checked whole first: any unknown tag or malformed line is reported with its line number and nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from core.learning.capture import masked
from core.learning.ports import LearningStore, NewExample, Outcome
from tagging.policy import AmbiguousTagError, UnknownTagError, find_tag
from tagging.taxonomy import Taxonomy

MAX_PROBLEMS = 50


class HistoryError(ValueError):
    """The file has problems; `problems` lists 'line N: reason' for each (nothing was stored)."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS]
        more = f"\n… and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        super().__init__("\n".join(shown) + more)
        self.problems = problems


@dataclass(frozen=True, slots=True)
class LabelledLine:
    """One checked line: its text and the (dimension, tag) pairs it names."""

    line: int
    text: str
    tags: frozenset[tuple[str, str]]


def _line(number: int, raw: str, taxonomy: Taxonomy) -> LabelledLine:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError('expected a JSON object like {"text": "…", "tags": ["询价客户"]}')
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("field 'text' is missing or not a non-empty string")
    names = data.get("tags")
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError("field 'tags' must be a list of tag names (may be empty)")
    found: set[tuple[str, str]] = set()
    unknown: list[str] = []
    for name in names:
        try:
            dimension, tag = find_tag(taxonomy, name)
        except UnknownTagError as exc:
            hint = f" (did you mean {', '.join(exc.close)}?)" if exc.close else ""
            unknown.append(f"unknown tag {name!r}{hint}")
            continue
        except AmbiguousTagError as exc:
            unknown.append(f"tag {name!r} is in several dimensions ({', '.join(exc.dimensions)}); write dimension:tag")
            continue
        found.add((dimension.key, tag.name))
    if unknown:
        raise ValueError("; ".join(unknown))
    return LabelledLine(number, text, frozenset(found))


def parse_history(lines: Iterable[str], taxonomy: Taxonomy) -> list[LabelledLine]:
    """Every non-blank line checked against `taxonomy`; HistoryError lists every bad line."""
    out: list[LabelledLine] = []
    problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        raw = raw.lstrip("\ufeff") if number == 1 else raw
        if not raw.strip():
            continue
        try:
            out.append(_line(number, raw, taxonomy))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        raise HistoryError(problems)
    if not out:
        raise HistoryError(["the file holds no labelled lines"])
    return out


def history_examples(lines: Iterable[LabelledLine], taxonomy: Taxonomy, now: datetime) -> list[NewExample]:
    """Positives for each line's tags, negatives for every other tag of the taxonomy."""
    every = [(tag.dimension, tag.name) for tag in taxonomy.iter_tags()]
    out: list[NewExample] = []
    for item in lines:
        text = masked(item.text)
        for dimension, tag in every:
            out.append(NewExample(text, dimension, tag, (dimension, tag) in item.tags, Outcome.IMPORTED, None, now))
    return out


async def import_history(
    store: LearningStore, lines: Iterable[str], taxonomy: Taxonomy, now: datetime
) -> tuple[int, int]:
    """Check the whole file, then store its examples: (lines, examples)."""
    parsed = parse_history(lines, taxonomy)
    examples = history_examples(parsed, taxonomy, now)
    await store.add_examples(examples)
    return len(parsed), len(examples)
