"""Error card: what went wrong and how to fix it, all text shown literally."""

from __future__ import annotations

from cards.adaptive import Card, Element, card, text
from cards.labels import Lang, label
from cards.text import literal

TITLE_CHARS = 120
DETAIL_CHARS = 2000


def build_error_card(
    detail: str, hint: str | None = None, title: str | None = None, lang: Lang = "zh"
) -> Card:
    """A red-titled card with the problem (`detail`) and an optional fix (`hint`)."""
    heading = literal(title, TITLE_CHARS) if title else label("error_title", lang)
    body: list[Element] = [
        text("❗ " + heading, weight="Bolder", color="Attention"),
        text(literal(detail, DETAIL_CHARS)),
    ]
    if hint:
        body.append(text(literal(hint, DETAIL_CHARS), isSubtle=True, size="Small"))
    return card(body)
