"""The personal-tags part of a customer card: the viewer's own notes-as-tags, marked as seen only by them."""

from __future__ import annotations

from collections.abc import Sequence

from cards.adaptive import Element, container, text
from cards.labels import Lang
from cards.text import literal

TAG_CHARS = 20

# Fixed strings of this part (trusted text), Chinese and English.
_TEXT: dict[str, tuple[str, str]] = {
    "title": ("🔒 我的标签（仅自己可见）", "🔒 My tags (only you see these)"),
    "none": (
        "还没有个人标签；发送“我的标签 客户 +标签”添加",
        "No personal tags yet; send “mytag customer +tag” to add",
    ),
    "added": ("已添加个人标签：{names}", "Personal tags added: {names}"),
    "removed": ("已移除个人标签：{names}", "Personal tags removed: {names}"),
    "not_held": ("本来就没有：{names}", "Not held anyway: {names}"),
}


def _say(key: str, lang: Lang, **values: object) -> str:
    zh, en = _TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


def _names(names: Sequence[str], lang: Lang) -> str:
    return ("、" if lang == "zh" else ", ").join(literal(n, TAG_CHARS) for n in names)


def personal_section(names: Sequence[str], lang: Lang = "zh") -> Element:
    """A container with the viewer's personal tags (or how to add one), set apart from the enterprise tags."""
    line = "　".join(f"🏷️ {literal(n, TAG_CHARS)}" for n in names) if names else _say("none", lang)
    return container(
        [
            text(_say("title", lang), weight="Bolder", spacing="Medium"),
            text(line, isSubtle=not names),
        ],
        separator=True,
        id="personal-tags",
    )


def personal_change_lines(
    added: Sequence[str], removed: Sequence[str], not_held: Sequence[str], lang: Lang = "zh"
) -> list[str]:
    """One escaped line per kind of change to the personal tags."""
    lines = []
    for key, names in (("added", added), ("removed", removed), ("not_held", not_held)):
        if names:
            lines.append(_say(key, lang, names=_names(names, lang)))
    return lines


def personal_markdown(names: Sequence[str], lang: Lang = "zh") -> str:
    """The personal-tags part of a WeCom markdown summary."""
    body = _names(names, lang) if names else _say("none", lang)
    return f"**{_say('title', lang)}**\n{body}"
