"""Adaptive Card 1.5 element helpers, the size measure and the shrink-to-fit loop."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from core.verbs import ALL_VERBS

CARD_VERSION = "1.5"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
# Teams refuses activities above ~28 KB; the card gets 24 KB so the envelope always fits.
MAX_CARD_BYTES = 24 * 1024
Card = dict[str, Any]
Element = dict[str, Any]


class CardTooLarge(ValueError):
    """A card stays above MAX_CARD_BYTES even with its lists cut to one item."""


def card(body: Iterable[Element], actions: Iterable[Element] = ()) -> Card:
    """A full-width Adaptive Card 1.5 with `body` and card-level `actions`."""
    out: Card = {"type": "AdaptiveCard", "$schema": CARD_SCHEMA, "version": CARD_VERSION, "body": list(body)}
    acts = list(actions)
    if acts:
        out["actions"] = acts
    out["msteams"] = {"width": "Full"}
    return out


def text(value: str, **props: Any) -> Element:
    """A wrapping TextBlock; `value` must already be escaped where it holds user text."""
    return {"type": "TextBlock", "text": value, "wrap": True, **props}


def run(value: str, **props: Any) -> Element:
    """A TextRun: shown verbatim (runs never render Markdown), so user text needs no escaping."""
    return {"type": "TextRun", "text": value, **props}


def rich(inlines: Iterable[Element | str], **props: Any) -> Element:
    """A RichTextBlock of runs (plain strings become plain runs); wraps like a TextBlock."""
    runs = [run(i) if isinstance(i, str) else i for i in inlines]
    return {"type": "RichTextBlock", "inlines": runs, **props}


def container(items: Iterable[Element], **props: Any) -> Element:
    return {"type": "Container", "items": list(items), **props}


def columns(*cols: Element, **props: Any) -> Element:
    return {"type": "ColumnSet", "columns": list(cols), **props}


def column(items: Iterable[Element], width: str = "stretch", **props: Any) -> Element:
    return {"type": "Column", "width": width, "items": list(items), **props}


def facts(pairs: Iterable[tuple[str, str]]) -> Element:
    """A FactSet; titles and values must already be escaped (FactSet renders Markdown in some hosts)."""
    return {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in pairs]}


def label_width(labels: Iterable[str]) -> str:
    """A pixel width that holds the longest fixed label on one line (CJK ~15 px, ASCII ~8 px a character)."""
    widest = max((sum(15 if ord(ch) > 0x2E7F else 8 for ch in lab) for lab in labels), default=40)
    return f"{widest + 8}px"


def fact_rows(pairs: Iterable[tuple[str, Element | str]], **props: Any) -> Element:
    """Label/value rows like a FactSet, but each value is a RichTextBlock shown verbatim and labels never wrap."""
    rows = list(pairs)
    width = label_width(lab for lab, _ in rows)
    out = [
        columns(
            column([text(lab, isSubtle=True, wrap=False)], width=width),
            column([value if isinstance(value, dict) else rich([value])]),
            spacing="None" if index else "Small",
        )
        for index, (lab, value) in enumerate(rows)
    ]
    return container(out, **props)


def action_set(actions: Iterable[Element]) -> Element:
    return {"type": "ActionSet", "actions": list(actions)}


def execute(title: str, verb: str, data: Mapping[str, Any], style: str | None = None) -> Element:
    """An Action.Execute for the Universal Actions handler; `verb` must be one of core.verbs."""
    if verb not in ALL_VERBS:
        raise ValueError(f"unknown card verb {verb!r}; add it to core/verbs.py")
    action: Element = {"type": "Action.Execute", "title": title, "verb": verb, "data": dict(data)}
    if style is not None:
        action["style"] = style
    return action


def toggle(title: str, target_ids: Iterable[str]) -> Element:
    return {"type": "Action.ToggleVisibility", "title": title, "targetElements": list(target_ids)}


def toggle_pair(target: str, show: str, hide: str) -> list[Element]:
    """Two ActionSets that open and close `target`; only the one that reads right for the state is shown."""
    ids = [target, f"{target}-show", f"{target}-hide"]
    return [
        {"type": "ActionSet", "id": ids[1], "actions": [toggle(show, ids)]},
        {"type": "ActionSet", "id": ids[2], "isVisible": False, "actions": [toggle(hide, ids)]},
    ]


def card_bytes(value: Card) -> int:
    """Size of the card as Bot Framework serialises it (compact, non-ASCII as \\u escapes)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=True))


def fit(render: Callable[[int], Card], limit: int) -> Card:
    """Render with list cap `limit`, halving the cap until the card fits MAX_CARD_BYTES."""
    cap = max(1, limit)
    while True:
        built = render(cap)
        if card_bytes(built) <= MAX_CARD_BYTES:
            return built
        if cap == 1:
            raise CardTooLarge(f"card is {card_bytes(built)} bytes even with one item per list")
        cap //= 2


def fit_most(render: Callable[[int], Card], limit: int) -> Card:
    """Render with the largest list cap up to `limit` whose card fits MAX_CARD_BYTES (a binary search)."""
    built = render(max(1, limit))
    if card_bytes(built) <= MAX_CARD_BYTES:
        return built
    low, high, best = 0, max(1, limit), None  # cap `high` is too large; `best` is the card of cap `low`
    while high - low > 1:
        middle = (low + high) // 2
        built = render(middle)
        if card_bytes(built) <= MAX_CARD_BYTES:
            low, best = middle, built
        else:
            high = middle
    if best is None:
        raise CardTooLarge(f"card is {card_bytes(built)} bytes even with one item per list")
    return best
