"""Tag markers on cards: the colour dot, then the taxonomy's emoji icon when the tag has one."""

from __future__ import annotations

from cards.colors import dot


def marker(color: str | None, icon: str | None) -> str:
    """'🔵' or, for a tag with an icon, '🔵 🔥' (the icon is validated as one emoji when the taxonomy loads)."""
    return f"{dot(color)} {icon}" if icon else dot(color)
