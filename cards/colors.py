"""Tag colours as coloured-dot emoji.

Adaptive Cards cannot colour text freely: TextBlock `color` and Container `style` only take a few semantic,
theme-dependent names (good, warning, attention …) that would misstate the taxonomy's colour and already
mean "state" in our cards. A coloured dot emoji renders the same in Teams desktop, web, mobile and in WeCom
markdown, needs no image hosting, and keeps the tag name itself plain text.
"""

from __future__ import annotations

import colorsys
import re
from functools import lru_cache

NO_COLOUR = "🏷️"
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
# Approximate rendered colour of each dot emoji (Twemoji palette).
# Hue (degrees) of each coloured dot; greys map to black/white and dark oranges to brown.
_HUES: tuple[tuple[str, float], ...] = (
    ("🔴", 0.0),
    ("🟠", 30.0),
    ("🟡", 52.0),
    ("🟢", 130.0),
    ("🔵", 212.0),
    ("🟣", 275.0),
    ("🔴", 360.0),
)


@lru_cache(maxsize=1024)  # a taxonomy has a few dozen colours; every tag on every card asks again
def dot(color: str | None) -> str:
    """The dot emoji closest in hue to the `#RRGGBB` colour; a tag emoji when no (valid) colour is set."""
    if color is None:
        return NO_COLOUR
    match = _HEX.match(color.strip())
    if match is None:
        return NO_COLOUR
    value = int(match.group(1), 16)
    red, green, blue = (((value >> shift) & 0xFF) / 255 for shift in (16, 8, 0))
    hue, saturation, brightness = colorsys.rgb_to_hsv(red, green, blue)
    if saturation < 0.2 or brightness < 0.2:
        return "⚫" if brightness < 0.5 else "⚪"
    degrees = hue * 360
    if 15 <= degrees < 45 and brightness < 0.65:
        return "🟤"
    return min(_HUES, key=lambda item: abs(item[1] - degrees))[0]
