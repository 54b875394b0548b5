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
from cards.views import AlertReason, AlertView, CustomerHit, DimensionView, SearchResultsView, TagView
from core import verbs
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
        for text in _strings(card):
            for marker in ("](", "<at>", "**bold**", "_客户_", "`x`", "http://"):
                assert marker not in text, (kind, text)


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
    dump = json.dumps(card, ensure_ascii=False)
    assert "3 天后到期" in dump and "🔵 询价客户" in dump and "🟡 VIP客户" in dump
    toggles = [a for a in _actions(card) if a["type"] == "Action.ToggleVisibility"]
    assert len(toggles) == 1
    target = toggles[0]["targetElements"][0]
    hidden = [c for c in card["body"] for c in c.get("items", []) if c.get("id") == target]
    assert hidden and hidden[0]["isVisible"] is False
    assert "询价客户 › 比价中" in json.dumps(hidden[0], ensure_ascii=False)


def test_suggestion_card_rerenders_with_decisions(now: datetime) -> None:
    pending = build_suggestion_card(suggestions(), now)
    by_verb = {a["verb"]: a for a in _actions(pending)}
    assert by_verb[verbs.SUGGESTION_ACCEPT_ALL]["data"] == {"suggestion_ids": [1, 2]}
    assert len([a for a in _actions(pending) if a["verb"] == verbs.SUGGESTION_REJECT]) == 2
    decided = build_suggestion_card(suggestions(decided=True), now)
    dump = json.dumps(decided, ensure_ascii=False)
    assert "✅ 已接受 · 李四 · 2025-03-01 09:25" in dump
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
    assert [a["verb"] for a in card["actions"]] == [verbs.ALERT_ACK, verbs.ALERT_SNOOZE, verbs.CUSTOMER_SHOW]
    assert card["actions"][1]["data"] == {"alert_id": 9, "days": 7}
    done = AlertView(9, "高危流失", 7, "ABC公司", (), now, acknowledged_by="王经理", acknowledged_at=now)
    acked = build_alert_card(done, now + timedelta(hours=1))
    assert [a["verb"] for a in acked["actions"]] == [verbs.CUSTOMER_SHOW]
    assert "王经理" in json.dumps(acked, ensure_ascii=False)


def test_colour_dots() -> None:
    assert dot("#2F80ED") == "🔵"
    assert dot("#EB5757") == "🔴"
    assert dot("#27AE60") == "🟢"
    assert dot(None) == NO_COLOUR
    assert dot("红色") == NO_COLOUR
