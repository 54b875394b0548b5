"""Help card from (usage, description_en, description_zh) rows supplied by the command parser."""

from __future__ import annotations

from collections.abc import Sequence

from cards.adaptive import Card, Element, card, fit, text
from cards.labels import Lang, label
from cards.text import literal

USAGE_CHARS = 120
DESCRIPTION_CHARS = 300
MAX_ENTRIES = 40


def build_help_card(entries: Sequence[tuple[str, str, str]], lang: Lang = "zh") -> Card:
    """Each command's usage in monospace with its description in `lang` and the other language below."""

    def render(cap: int) -> Card:
        body: list[Element] = [
            text(label("help_title", lang), size="Medium", weight="Bolder"),
            text(label("help_mention", lang), isSubtle=True, spacing="Small"),
        ]
        for usage, description_en, description_zh in entries[:cap]:
            first, second = (
                (description_zh, description_en) if lang == "zh" else (description_en, description_zh)
            )
            body.append(
                text(literal(usage, USAGE_CHARS), fontType="Monospace", weight="Bolder", separator=True)
            )
            body.append(text(literal(first, DESCRIPTION_CHARS), spacing="None"))
            if second and second != first:
                body.append(
                    text(literal(second, DESCRIPTION_CHARS), isSubtle=True, size="Small", spacing="None")
                )
        if len(entries) > cap:
            body.append(text(label("more", lang, n=len(entries) - cap), isSubtle=True))
        return card(body)

    return fit(render, MAX_ENTRIES)
