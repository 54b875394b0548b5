"""Card clicks that arrive as message activities: `messageBack` buttons and `Action.Submit` (text plus `value`).

Teams sends `value` as a JSON object or as a string holding one. Such a message is a click, never typed
text: its `text` is whatever the card author put in the button, so it is not parsed as a command.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botbuilder.schema import Activity

MAX_VALUE_CHARS = 64 * 1024  # a click's value is small; a bigger string is not parsed


@dataclass(frozen=True)
class CardClick:
    """A click: the card verb it names ("" when none) and the data that goes with it."""

    verb: str
    data: Mapping[str, Any] = field(default_factory=dict)


def card_click(activity: Activity) -> CardClick | None:
    """The click a message activity carries, or None for a typed message (no `value`)."""
    if activity.value is None or activity.value in ("", {}, []):
        return None
    value = _object(activity.value)
    if value is None:
        return CardClick("")  # a click with a plain value: no verb Kebiao knows
    raw_verb = value.get("verb")
    verb = raw_verb if isinstance(raw_verb, str) else ""
    data = value.get("data")
    if isinstance(data, dict):
        return CardClick(verb, data)
    return CardClick(verb, {k: v for k, v in value.items() if k not in ("verb", "msteams")})


def _object(value: Any) -> dict[str, Any] | None:
    """`value` as a JSON object: a dict, or a string that parses to one."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and len(value) <= MAX_VALUE_CHARS and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None
