"""The meeting-prep part of a customer card: a heading that says why the card is posted."""

from __future__ import annotations

from cards.labels import Lang

_TEXT: dict[str, tuple[str, str]] = {
    "prep": ("📅 会前准备：客户标签一览", "📅 Meeting prep: the customer's tags"),
}


def prep_heading(lang: Lang = "zh") -> str:
    """The fixed line shown above a meeting-prep card."""
    zh, en = _TEXT["prep"]
    return zh if lang == "zh" else en
