"""Every card: Adaptive Card 1.5 schema, structure, size, literal user text and behaviour."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from cards.adaptive import MAX_CARD_BYTES, card_bytes
from cards.alert import build_alert_card
from cards.colors import NO_COLOUR, dot
from cards.customer import build_customer_summary_card
from cards.search import build_search_results_card
from cards.structure import problems
from cards.suggestion import build_suggestion_card
from cards.views import (
    AlertReason,
    AlertView,
    CustomerHit,
    CustomerSummaryView,
    DimensionView,
    SearchResultsView,
    TagView,
)
from cards.wecom import search_markdown
from core import verbs
from core.types import Customer
from tests.cards.samples import all_cards, customer, suggestions, summary

PAYLOADS = ["[x](http://evil)", "<at>CEO</at>", "**bold**", "恶意_客户_`x`#1"]


def _strings(node: Any, skip_data: bool = True) -> list[str]:
    """Every displayed string in a card (action `data` is opaque to the host and skipped)."""
    if isinstance(node, dict):
        return [
            s
            for k, v in node.items()
            if k != "$schema" and not (skip_data and k == "data")
            for s in _strings(v)
        ]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def _of_type(node: Any, kind: str) -> list[dict[str, Any]]:
    """Every element of `kind` in the card, depth first."""
    if isinstance(node, dict):
        found = [node] if node.get("type") == kind else []
        return found + [e for k, v in node.items() if k != "data" for e in _of_type(v, kind)]
    if isinstance(node, list):
        return [e for v in node for e in _of_type(v, kind)]
    return []


def _markdown_strings(card: Any) -> list[str]:
    """Text a Teams client renders as Markdown: TextBlock text and FactSet titles and values."""
    facts = [s for f in _of_type(card, "FactSet") for fact in f["facts"] for s in (fact["title"], fact["value"])]
    return [t["text"] for t in _of_type(card, "TextBlock")] + facts


def _lines(card: Any) -> list[str]:
    """Each text block as a person reads it: TextBlock text, or a RichTextBlock's runs joined."""
    blocks = [t["text"] for t in _of_type(card, "TextBlock")]
    return blocks + ["".join(r["text"] for r in b["inlines"]) for b in _of_type(card, "RichTextBlock")]


def _actions(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if str(node.get("type", "")).startswith("Action.") else []
        return found + [a for v in node.values() for a in _actions(v)]
    if isinstance(node, list):
        return [a for v in node for a in _actions(v)]
    return []


@pytest.mark.parametrize("kind, card", all_cards(), ids=lambda v: v if isinstance(v, str) else "")
def test_card_matches_schema(kind: str, card: dict[str, Any], card_validator: Any) -> None:
    body = {k: v for k, v in card.items() if k != "msteams"}
    errors = sorted(card_validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


@pytest.mark.parametrize("kind, card", all_cards(), ids=lambda v: v if isinstance(v, str) else "")
def test_card_structure(kind: str, card: dict[str, Any]) -> None:
    assert problems(card) == []
    assert card["version"] == "1.5"


def test_structure_check_catches_bad_cards() -> None:
    card = build_alert_card(
        AlertView(1, "流失预警", 2, "ABC公司", (), datetime(2025, 1, 1)), datetime(2025, 1, 2)
    )
    card["body"].append({"type": "Carousel"})
    card["actions"].append({"type": "Action.OpenUrl", "url": "http://evil"})
    card["actions"].append({"type": "Action.Execute", "verb": "customer.delete", "data": {}})
    found = problems(card)
    assert any("Carousel" in p for p in found)
    assert any("Action.OpenUrl" in p for p in found)
    assert any("customer.delete" in p for p in found)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_user_text_is_shown_literally(payload: str, now: datetime) -> None:
    for kind, card in all_cards(payload, now):
        for text in _markdown_strings(card):
            for marker in ("](", "<at>", "**bold**", "_客户_", "`x`", "http://"):
                assert marker not in text, (kind, text)
        # Where Markdown is not rendered (TextRuns) the text is shown exactly as typed, so it copies right.
        runs = [r["text"] for r in _of_type(card, "TextRun")]
        assert any(payload in r for r in runs), (kind, runs)


def test_identifiers_and_punctuation_are_not_escaped(now: datetime) -> None:
    odd = Customer(
        1, "Bosch (China) R&D #2", company="Bosch_Group", owner="li_ming@example.com", crm_id="SF_0012-A"
    )
    view = CustomerSummaryView(odd, (), owner_name=None)
    runs = [r["text"] for r in _of_type(build_customer_summary_card(view, now), "TextRun")]
    for value in ("Bosch (China) R&D #2", "Bosch_Group", "li_ming@example.com", "SF_0012-A"):
        assert value in runs
    named = CustomerSummaryView(odd, (), owner_name="李明")
    assert "李明" in [r["text"] for r in _of_type(build_customer_summary_card(named, now), "TextRun")]


def test_every_action_is_a_known_verb_with_its_data() -> None:
    for kind, card in all_cards():
        for action in _actions(card):
            if action["type"] == "Action.Execute":
                assert action["verb"] in verbs.ALL_VERBS, kind
                assert set(verbs.DATA_KEYS[action["verb"]]) <= set(action["data"]), kind


def test_agent_card_leaks_nothing_about_sensitive_tags(now: datetime) -> None:
    with_risk = summary()
    without = type(with_risk)(
        with_risk.customer,
        tuple(d for d in with_risk.dimensions if not d.sensitive),
        viewer_sees_sensitive=False,
    )
    assert build_customer_summary_card(with_risk, now) == build_customer_summary_card(without, now)
    assert "高危流失" not in json.dumps(build_customer_summary_card(with_risk, now), ensure_ascii=False)
    manager = build_customer_summary_card(summary(manager=True), now)
    assert "高危流失" in json.dumps(manager, ensure_ascii=False)


def test_summary_hides_sub_tags_behind_a_toggle(now: datetime) -> None:
    card = build_customer_summary_card(summary(), now)
    lines = _lines(card)
    assert "🔵 询价客户（3 天后到期）" in lines and "🟡 VIP客户" in lines
    toggles = [a for a in _actions(card) if a["type"] == "Action.ToggleVisibility"]
    assert [t["title"] for t in toggles] == ["显示子标签（1）", "收起子标签"]
    target = toggles[0]["targetElements"][0]
    assert all(target in t["targetElements"] for t in toggles)
    hidden = [c for c in card["body"] for c in c.get("items", []) if c.get("id") == target]
    assert hidden and hidden[0]["isVisible"] is False
    assert "🏷️ 询价客户 › 比价中" in _lines(hidden[0])
    # The two labels swap: only "show" is visible while closed; each toggle flips both buttons and the list.
    sets = {c["id"]: c for c in card["body"] for c in c.get("items", []) if c.get("type") == "ActionSet"}
    assert sets[f"{target}-show"].get("isVisible", True) and sets[f"{target}-hide"]["isVisible"] is False
    assert set(toggles[0]["targetElements"]) == {target, f"{target}-show", f"{target}-hide"}


def test_summary_shows_expiry_only_when_near_and_marks_managers_only(now: datetime) -> None:
    tags = (
        TagView("近期", "阶段", expires_at=now + timedelta(days=3)),
        TagView("远期", "阶段", expires_at=now + timedelta(days=60)),
    )
    risk = DimensionView("风险与问题", (TagView("高危流失", "风险与问题", sensitive=True),), sensitive=True)
    view = CustomerSummaryView(customer(), (DimensionView("阶段", tags), risk), viewer_sees_sensitive=True)
    lines = _lines(build_customer_summary_card(view, now))
    assert "🏷️ 近期（3 天后到期）" in lines and "🏷️ 远期" in lines
    assert "风险与问题　🔒 仅经理可见" in lines


def test_suggestion_card_rerenders_with_decisions(now: datetime) -> None:
    pending = build_suggestion_card(suggestions(), now)
    by_verb = {a["verb"]: a for a in _actions(pending)}
    assert by_verb[verbs.SUGGESTION_ACCEPT_ALL]["data"] == {"suggestion_ids": [1, 2]}
    assert len([a for a in _actions(pending) if a["verb"] == verbs.SUGGESTION_REJECT]) == 2
    decided = build_suggestion_card(suggestions(decided=True), now)
    assert "✅ 已接受 · 李四 · 2025-03-01 09:25" in _lines(decided)
    ids = [a["data"].get("suggestion_id") for a in _actions(decided)]
    assert 1 not in ids and 2 in ids
    assert verbs.SUGGESTION_ACCEPT_ALL not in {a["verb"] for a in _actions(decided)}


def test_search_results_page_and_more(now: datetime) -> None:
    hits = tuple(CustomerHit(customer(f"客户{i}", i)) for i in range(10))
    card = build_search_results_card(SearchResultsView("客户", hits, total=23, page=2, page_size=10), now)
    dump = json.dumps(card, ensure_ascii=False)
    assert "还有 3 个" in dump
    pages = {a["title"]: a["data"]["page"] for a in _actions(card) if a["verb"] == verbs.SEARCH_PAGE}
    assert pages == {"上一页": 1, "下一页": 3}


def test_search_results_past_the_count_cap_say_more_than(now: datetime) -> None:
    hits = tuple(CustomerHit(customer(f"客户{i}", i)) for i in range(10))
    capped = SearchResultsView("VIP客户", hits, total=1000, page=100, page_size=10, total_is_lower_bound=True)
    dump = json.dumps(build_search_results_card(capped, now), ensure_ascii=False)
    assert "共 1000+ 个" in dump and "第 100/100+ 页" in dump
    paging = [a for a in _actions(build_search_results_card(capped, now)) if a["verb"] == verbs.SEARCH_PAGE]
    # The count stopped at its cap, the matches did not: Next stays.
    assert {a["title"]: a["data"]["page"] for a in paging} == {"上一页": 99, "下一页": 101}
    first = SearchResultsView("VIP客户", hits, total=1000, page=1, page_size=10, total_is_lower_bound=True)
    assert "还有 990+ 个" in json.dumps(build_search_results_card(first, now), ensure_ascii=False)
    assert "共 1000+ 个" in search_markdown(first, now) and "还有 990+ 个" in search_markdown(first, now)
    exact = SearchResultsView("VIP客户", hits, total=1000, page=100, page_size=10)
    assert "+" not in search_markdown(exact, now).split("\n")[0]
    paging = [a for a in _actions(build_search_results_card(exact, now)) if a["verb"] == verbs.SEARCH_PAGE]
    assert [a["title"] for a in paging] == ["上一页"]


def test_huge_inputs_stay_under_the_size_cap(now: datetime) -> None:
    tags = tuple(
        TagView(f"超长标签名称{i}" * 10, "需求阶段", level=1 + i % 2, parent="父") for i in range(2000)
    )
    view = type(summary())(customer("大客户" * 50), (DimensionView("需求阶段", tags),))
    card = build_customer_summary_card(view, now)
    assert card_bytes(card) <= MAX_CARD_BYTES
    assert problems(card) == []
    assert "还有" in json.dumps(card, ensure_ascii=False)
    hits = tuple(CustomerHit(customer("客" * 300, i), tags[:40]) for i in range(500))
    results = build_search_results_card(SearchResultsView("客", hits, total=5000), now)
    assert card_bytes(results) <= MAX_CARD_BYTES
    reasons = tuple(AlertReason("原因" * 200, 0.1) for _ in range(300))
    alert = build_alert_card(AlertView(1, "预警", 2, "客户", reasons, now), now)
    assert card_bytes(alert) <= MAX_CARD_BYTES


def test_alert_buttons_follow_state(now: datetime) -> None:
    open_alert = AlertView(
        9, "高危流失", 7, "ABC公司", (AlertReason("到期未续费", 0.7), AlertReason("投诉", 0.3)), now
    )
    card = build_alert_card(open_alert, now)
    assert [(a["verb"], a["title"]) for a in card["actions"]] == [
        (verbs.ALERT_ACK, "我知道了"),
        (verbs.ALERT_SNOOZE, "已跟进"),
    ]
    assert card["actions"][1]["data"] == {"alert_id": 9, "days": 7}
    assert [a["verb"] for a in _actions(card["body"])] == [verbs.CUSTOMER_SHOW]  # beside the customer's name
    assert "【高】到期未续费" in _lines(card) and "【中】投诉" in _lines(card)
    assert not any("权重" in line or "▰" in line for line in _lines(card))
    done = AlertView(9, "高危流失", 7, "ABC公司", (), now, acknowledged_by="王经理", acknowledged_at=now)
    acked = build_alert_card(done, now + timedelta(hours=1))
    assert "actions" not in acked
    assert [a["verb"] for a in _actions(acked)] == [verbs.CUSTOMER_SHOW]
    assert "王经理" in json.dumps(acked, ensure_ascii=False)


def test_digest_rows_each_open_their_customer(now: datetime) -> None:
    rows = tuple(AlertReason(f"客户{i} · 询价客户 {i}天后到期", 1 - i / 10, 100 + i) for i in range(8))
    card = build_alert_card(AlertView(3, "12 个标签即将到期", 100, "客户0 等", rows, now, unlisted=4), now)
    shows = [a["data"]["customer_id"] for a in _actions(card) if a.get("verb") == verbs.CUSTOMER_SHOW]
    assert sorted(shows) == list(range(100, 108))  # one per row, no card-wide one for the first customer
    toggles = [a["title"] for a in _actions(card) if a["type"] == "Action.ToggleVisibility"]
    assert toggles == ["显示其余 3 条", "收起"]
    assert "另有 4 个未列在此卡片中" in _lines(card)


def test_colour_dots() -> None:
    assert dot("#2F80ED") == "🔵"
    assert dot("#EB5757") == "🔴"
    assert dot("#27AE60") == "🟢"
    assert dot(None) == NO_COLOUR
    assert dot("红色") == NO_COLOUR


def test_search_hit_lists_its_tags_one_a_line_named_ones_first(now: datetime) -> None:
    held = tuple(TagView(f"标签{i}", "需求阶段") for i in range(6))
    hit = CustomerHit(customer("客户甲", 1), held, frozenset({"标签4", "标签5"}))
    card = build_search_results_card(SearchResultsView("标签4 OR 标签5", (hit,), total=1), now)
    info = card["body"][1]["columns"][0]["items"]
    lines = ["".join(r["text"] for r in item["inlines"]) for item in info if item["type"] == "RichTextBlock"]
    assert lines[2:] == ["🏷️ 标签4", "🏷️ 标签5", "🏷️ 标签0"]  # after the name and the company line
    named = [item for item in info if item["type"] == "RichTextBlock"][2:4]
    assert all(any(r.get("highlight") for r in item["inlines"]) for item in named)
    assert info[-1]["type"] == "TextBlock" and info[-1]["text"] == "还有 3 个"
    many = CustomerHit(customer("客户乙", 2), held, frozenset(t.name for t in held))
    card = build_search_results_card(SearchResultsView("x", (many,), total=1), now)
    assert "还有" not in json.dumps(card, ensure_ascii=False)  # every tag the search named has its line
