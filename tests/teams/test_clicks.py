"""Card clicks that arrive as messages: the `value` shapes Teams documents for messageBack and Action.Submit."""

from __future__ import annotations

from typing import Any

import pytest
from botbuilder.schema import Activity

from bots.teams.clicks import MAX_VALUE_CHARS, CardClick, card_click


def _click(value: Any) -> CardClick | None:
    return card_click(Activity().deserialize({"type": "message", "text": "clicked", "value": value}))


@pytest.mark.parametrize("value", [None, "", {}, []])
def test_a_typed_message_is_no_click(value: Any) -> None:
    assert _click(value) is None


@pytest.mark.parametrize(
    ("value", "click"),
    [
        ({"property": "propertyValue"}, CardClick("", {"property": "propertyValue"})),  # cards-actions.md
        ('{"property": "propertyValue" }', CardClick("", {"property": "propertyValue"})),  # value as a string
        (
            {"verb": "suggestion.accept", "data": {"suggestion_id": 3}},
            CardClick("suggestion.accept", {"suggestion_id": 3}),
        ),
        (
            {"verb": "alert.ack", "alert_id": 4, "msteams": {"type": "messageBack"}},
            CardClick("alert.ack", {"alert_id": 4}),
        ),
        ({"verb": 7, "data": {"a": 1}}, CardClick("", {"a": 1})),  # a verb must be a string
        ("Show me more", CardClick("")),  # a plain string value: a click without a verb
        ('{"broken": ', CardClick("")),
        ("[1, 2]", CardClick("")),
    ],
)
def test_documented_click_values(value: Any, click: CardClick) -> None:
    assert _click(value) == click


def test_an_oversized_string_value_is_not_parsed() -> None:
    big = '{"verb": "suggestion.accept", "pad": "' + "x" * MAX_VALUE_CHARS + '"}'
    assert _click(big) == CardClick("")
