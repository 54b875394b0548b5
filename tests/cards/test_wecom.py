"""WeCom markdown and template_card renderers: limits, literal text, button keys."""

from __future__ import annotations

from datetime import datetime

import pytest

from cards.views import AlertReason, AlertView, ChoiceView, SuggestionCardView, SuggestionItem
from cards.wecom import (
    KEY_BYTES,
    MARKDOWN_BYTES,
    alert_template_card,
    button_key,
    choice_template_card,
    customer_summary_markdown,
    parse_button_key,
    suggestion_markdown,
    suggestion_template_card,
)
from core import verbs
from tests.cards.samples import customer, suggestions, summary


def test_button_keys_round_trip() -> None:
    key = button_key(verbs.SUGGESTION_ACCEPT_ALL, [12, 13])
    assert key == "suggestion.accept_all:12,13"
    assert parse_button_key(key) == (verbs.SUGGESTION_ACCEPT_ALL, (12, 13))
    for bad in ("", "suggestion.accept", "customer.delete:1", "suggestion.accept:1;2", "<at>:1"):
        with pytest.raises(ValueError):
            parse_button_key(bad)
    with pytest.raises(ValueError):
        button_key("customer.delete", [1])
    with pytest.raises(ValueError):
        button_key(verbs.SUGGESTION_ACCEPT_ALL, range(10**6, 10**6 + 200))  # > 1024 bytes


def test_suggestion_template_card_limits(now: datetime) -> None:
    items = tuple(
        SuggestionItem(i, f"很长很长的标签名称{i}", "需求阶段", ("报价",), "要报价", 0.9) for i in range(1, 9)
    )
    card = suggestion_template_card(SuggestionCardView(7, "ABC公司" * 20, items), "task_7-1@x")
    assert card is not None
    assert card["card_type"] == "button_interaction"
    assert len(card["main_title"]["title"]) <= 36
    assert len(card["button_list"]) <= 6
    assert all(len(b["text"]) <= 10 and len(b["key"].encode()) <= KEY_BYTES for b in card["button_list"])
    assert len({b["key"] for b in card["button_list"]}) == len(card["button_list"])
    assert all(len(r["keyname"]) <= 5 and len(r["value"]) <= 30 for r in card["horizontal_content_list"])
    assert parse_button_key(card["button_list"][-1]["key"]) == (
        verbs.SUGGESTION_ACCEPT_ALL,
        (1, 2, 3, 4, 5, 6),
    )
    assert "还有 2 个" in card["sub_title_text"]
    assert suggestion_template_card(suggestions(decided=True), "t1") is not None
    with pytest.raises(ValueError):
        suggestion_template_card(suggestions(), "bad id!")


def test_alert_and_choice_cards(now: datetime) -> None:
    alert = alert_template_card(
        AlertView(3, "高危流失", 7, "ABC公司", (AlertReason("到期未续费", 0.8),), now), now, "a3"
    )
    assert [parse_button_key(b["key"])[0] for b in alert["button_list"]] == [
        verbs.ALERT_ACK,
        verbs.ALERT_SNOOZE,
        verbs.CUSTOMER_SHOW,
    ]
    choice = choice_template_card(
        ChoiceView("ABC", tuple(customer(f"ABC公司{i}", i) for i in range(8))), "c1"
    )
    assert len(choice["button_list"]) == 6
    assert "还有 2 个" in choice["sub_title_text"]


def test_markdown_is_literal_and_bounded(now: datetime) -> None:
    text = customer_summary_markdown(summary("[x](http://evil)<@CEO>**粗体**"), now)
    assert "](" not in text and "<@" not in text and "**粗体**" not in text
    assert "高危流失" not in text  # agents never see sensitive tags
    assert "高危流失" in customer_summary_markdown(summary(manager=True), now)
    big = suggestion_markdown(suggestions("标签" * 500), now)
    assert len(big.encode()) <= MARKDOWN_BYTES
    decided = suggestion_markdown(suggestions(decided=True), now)
    assert "✅ 已接受 · 李四 · 2025-03-01 09:25" in decided
