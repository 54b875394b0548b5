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


def container(items: Iterable[Element], **props: Any) -> Element:
    return {"type": "Container", "items": list(items), **props}


def columns(*cols: Element, **props: Any) -> Element:
    return {"type": "ColumnSet", "columns": list(cols), **props}


def column(items: Iterable[Element], width: str = "stretch", **props: Any) -> Element:
    return {"type": "Column", "width": width, "items": list(items), **props}


def facts(pairs: Iterable[tuple[str, str]]) -> Element:
    """A FactSet; titles and values must already be escaped (FactSet renders Markdown in some hosts)."""
    return {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in pairs]}


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
