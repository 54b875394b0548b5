"""Error card: what went wrong and how to fix it, all text shown literally."""

from __future__ import annotations

from cards.adaptive import Card, Element, card, rich, run
from cards.labels import Lang, label
from cards.text import plain

TITLE_CHARS = 120
DETAIL_CHARS = 2000


def build_error_card(
    detail: str, hint: str | None = None, title: str | None = None, lang: Lang = "zh"
) -> Card:
    """A red-titled card with the problem (`detail`) and an optional fix (`hint`), both shown verbatim.

    `lang` must be the language `detail` is written in, so the title matches it.
    """
    heading = plain(title, TITLE_CHARS) if title else label("error_title", lang)
    body: list[Element] = [
        rich([run("❗ " + heading, weight="Bolder", color="Attention")]),
        rich([run(plain(detail, DETAIL_CHARS))]),
    ]
    if hint:
        body.append(rich([run(plain(hint, DETAIL_CHARS), isSubtle=True)], spacing="Small"))
    return card(body)
