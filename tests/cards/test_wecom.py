"""WeCom markdown and template_card renderers: limits, literal text, button keys."""

from __future__ import annotations

from datetime import datetime

import pytest

from cards.views import AlertReason, AlertView, ChoiceView, SuggestionCardView, SuggestionItem
from cards.wecom import (
    KEY_BYTES,
    MARKDOWN_BYTES,
    alert_markdown,
    alert_markdown_parts,
    alert_template_card,
    button_key,
    choice_template_card,
    copyable,
    customer_summary_markdown,
    parse_button,
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
    assert choice is not None and len(choice["button_list"]) == 6
    assert [b["text"] for b in choice["button_list"]] == [f"选择 {n}" for n in range(1, 7)]
    assert [r["keyname"] for r in choice["horizontal_content_list"]] == [str(n) for n in range(1, 7)]
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


def test_button_key_extras_round_trip_and_refuse_tampering() -> None:
    key = button_key(verbs.CUSTOMER_CHOOSE, [7], {"verb": "tag", "add": "VIP客户\n询价_(A&B)#1", "remove": ""})
    assert parse_button(key) == (verbs.CUSTOMER_CHOOSE, (7,), {"verb": "tag", "add": "VIP客户\n询价_(A&B)#1"})
    assert parse_button_key(key) == (verbs.CUSTOMER_CHOOSE, (7,))
    for bad in (key + "!", key.split("~")[0] + "~e30x", "customer.choose:7~WzFd", "customer.choose:7~"):
        with pytest.raises(ValueError):
            parse_button(bad)  # not base64url JSON of text values, a list, or an empty tail
    with pytest.raises(ValueError):
        button_key(verbs.CUSTOMER_CHOOSE, [7], {"add": "很长的标签" * 80})  # > 1024 bytes
    with pytest.raises(ValueError):
        button_key(verbs.CUSTOMER_CHOOSE, [7], {"Bad-Name": "x"})


def test_copyable_keeps_identifiers_verbatim_but_not_what_wecom_acts_on() -> None:
    assert copyable("SF_0012-A", 80) == "`SF_0012-A`"
    assert copyable("Bosch (China) R&D #2", 80) == "`Bosch (China) R&D #2`"
    assert copyable("a`b <@ceo> &lt; &amp x\nline", 80) == "`a｀b ＜@ceo＞ ＆lt; &amp x line`"
    assert copyable("", 80) == ""


def test_alert_markdown_never_cuts_a_row_and_says_how_many_it_left_out(now: datetime) -> None:
    name = "华为技术（上海）R&D #7 (China)_Holdings & Partners 长名称客户有限公司"
    reasons = tuple(AlertReason(f"{name} · VIP客户 {i}天后到期（2025-03-{i:02d}）", 0.5, 100 + i) for i in range(40))
    view = AlertView(3, "40 个标签即将到期", 100, f"{name} 等", reasons, now, unlisted=5)
    one = alert_markdown(view, now)
    assert len(one.encode()) <= MARKDOWN_BYTES and "…" not in one
    rows = [line for line in one.split("\n") if line.startswith("> ")]
    assert all(line.endswith("）") for line in rows)
    assert f"另有 {40 - len(rows) + 5} 条未在此消息中列出" in one and "显示全部标签" in one
    parts = alert_markdown_parts(view, now)
    assert len(parts) > 1 and all(len(p.encode()) <= MARKDOWN_BYTES and "…" not in p for p in parts)
    assert sum(p.count("\n> ") for p in parts) == 40 and "另有 5 个未列在此卡片中" in parts[-1]
