"""Labelled history import (`kebiao learn import`): one {"text": ..., "tags": [...]} per line.

Listed tags are positives; every other tag of the taxonomy in force is a negative for that text. The file is
checked whole first: any unknown tag or malformed line is reported with its line number and nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from core.learning.capture import masked
from core.learning.ports import LearningStore, NewExample, Outcome
from core.progress import PhaseCounter, Progress
from tagging.policy import AmbiguousTagError, UnknownTagError, find_tag
from tagging.taxonomy import Taxonomy

MAX_PROBLEMS = 50
PROGRESS_EVERY = 10_000  # lines checked between progress reports


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


def _line(number: int, raw: str, taxonomy: Taxonomy, known: dict[str, tuple[str, str] | str]) -> LabelledLine:
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
        if name not in known:
            known[name] = _resolve(name, taxonomy)
        resolved = known[name]
        if isinstance(resolved, str):
            unknown.append(resolved)
        else:
            found.add(resolved)
    if unknown:
        raise ValueError("; ".join(unknown))
    return LabelledLine(number, text, frozenset(found))


def _resolve(name: str, taxonomy: Taxonomy) -> tuple[str, str] | str:
    """(dimension, tag) of a tag name, or why it names none."""
    try:
        dimension, tag = find_tag(taxonomy, name)
    except UnknownTagError as exc:
        hint = f" (did you mean {', '.join(exc.close)}?)" if exc.close else ""
        return f"unknown tag {name!r}{hint}"
    except AmbiguousTagError as exc:
        return f"tag {name!r} is in several dimensions ({', '.join(exc.dimensions)}); write dimension:tag"
    return dimension.key, tag.name


def parse_history(
    lines: Iterable[str], taxonomy: Taxonomy, progress: Callable[[int], None] | None = None
) -> list[LabelledLine]:
    """Every non-blank line checked against `taxonomy`; HistoryError lists every bad line."""
    out: list[LabelledLine] = []
    problems: list[str] = []
    known: dict[str, tuple[str, str] | str] = {}  # tag name -> (dimension, tag) or the reason it is refused
    for number, raw in enumerate(lines, start=1):
        raw = raw.lstrip("\ufeff") if number == 1 else raw
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
        if not raw.strip():
            continue
        try:
            out.append(_line(number, raw, taxonomy, known))
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
    store: LearningStore,
    lines: Iterable[str],
    taxonomy: Taxonomy,
    now: datetime,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Check the whole file, then store its examples (history_examples, written set-based by the store):
    (lines, examples). `progress(phase, done, total)` hears of checking, then of writing."""
    lines = list(lines)
    report = PhaseCounter(progress, "checking", len(lines))
    parsed = parse_history(lines, taxonomy, report)
    every = [(tag.dimension, tag.name) for tag in taxonomy.iter_tags()]
    staged = [(masked(item.text), sorted(item.tags)) for item in parsed]
    examples = await store.add_history(staged, every, now, PhaseCounter(progress, "writing", len(staged)))
    return len(parsed), examples
