"""Card parts of chat features: tag icons, the personal section, meeting prep, channel names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cards.channel_name import channel_offer_card, conventional_name_section
from cards.icons import marker
from cards.personal import personal_change_lines, personal_markdown, personal_section
from cards.present import present
from core import verbs
from core.chat.service import ChannelOffer, SummaryResult
from core.tags.summary import summarise
from core.types import Assignment, AssignmentState, Customer, Role, Source, User
from tagging.loader import load_taxonomy_text
from tests.tagging.test_regions import REGIONAL

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CUSTOMER = Customer(id=7, name="北京暖通_(R&D) #2", region="华北")


def _summary_card(**changes: Any) -> dict[str, Any]:
    taxonomy = load_taxonomy_text(REGIONAL)
    held = [Assignment(1, 7, "need", "采暖设备意向", AssignmentState.ACTIVE, Source.MANUAL, "a", NOW)]
    summary = summarise(CUSTOMER, held, taxonomy, User("a", Role.AGENT))
    return present(SummaryResult(summary, User("a"), **changes), taxonomy, NOW)


def _lines(element: Any) -> list[str]:
    """The text of every TextBlock and RichTextBlock (its runs joined), depth first."""
    if isinstance(element, list):
        return [line for item in element for line in _lines(item)]
    if not isinstance(element, dict):
        return []
    if element.get("type") == "TextBlock":
        return [element["text"]]
    if element.get("type") == "RichTextBlock":
        return ["".join(i["text"] for i in element["inlines"])]
    return [line for value in element.values() for line in _lines(value)]


def test_icon_stands_after_the_colour_dot() -> None:
    assert marker(None, "🔥").endswith(" 🔥") and marker(None, None) == marker(None, None).strip()
    assert any("🔥 采暖设备意向" in line for line in _lines(_summary_card()))


def test_personal_section_only_when_given_and_escaped() -> None:
    assert "personal-tags" not in str(_summary_card())
    built = _summary_card(personal=("周三拜访", "*粗体*"))
    [section] = [b for b in built["body"] if b.get("id") == "personal-tags"]
    assert "我的标签（仅自己可见）" in str(section) and "周三拜访" in str(section) and "*粗体*" not in str(section)
    assert "还没有个人标签" in str(personal_section((), "zh"))
    assert personal_change_lines(("甲",), (), ("乙",), "en") == ["Personal tags added: 甲", "Not held anyway: 乙"]
    assert personal_markdown(("甲", "乙"), "zh").endswith("甲、乙")


def test_prep_heading_and_conventional_name_verbatim() -> None:
    built = _summary_card(prep=True)
    assert any("会前准备" in line for line in _lines(built["body"][:3]))
    runs = [i["text"] for b in built["body"] if b.get("type") == "RichTextBlock" for i in b["inlines"]]
    assert "北京暖通_(R&D) #2" in runs  # no core or stage tag held: the bare name, not escaped
    assert conventional_name_section("[VIP]A-B")["inlines"][1]["text"] == "[VIP]A-B"


def test_channel_offer_card_links_with_one_click() -> None:
    built = channel_offer_card("19:x@thread.tacv2", "[VIP]ABC公司-续约", 3, "ABC公司", "zh")
    [action] = built["actions"]
    assert action["verb"] == verbs.CHANNEL_LINK and action["data"] == {
        "channel_id": "19:x@thread.tacv2",
        "customer_id": 3,
        "channel_name": "[VIP]ABC公司-续约",
    }
    assert present(ChannelOffer("19:x@thread.tacv2", "n", CUSTOMER), load_taxonomy_text(REGIONAL), NOW)["actions"]


def test_parts_match_the_card_schema(card_validator: Any) -> None:
    offer = channel_offer_card("19:x@thread.tacv2", "[VIP]ABC公司-续约", 3, "ABC公司", "en")
    for built in (_summary_card(personal=("周三拜访",), prep=True), offer):
        body = {k: v for k, v in built.items() if k != "msteams"}  # Teams' extension, not in the schema
        errors = [f"{list(e.path)}: {e.message[:120]}" for e in card_validator.iter_errors(body)]
        assert not errors, errors


def test_fit_most_keeps_the_largest_list_that_fits_and_refuses_one_that_never_fits() -> None:
    from cards.adaptive import MAX_CARD_BYTES, CardTooLarge, card, card_bytes, fit, fit_most, text

    def render(cap: int) -> dict[str, Any]:
        return card([text("x" * 500) for _ in range(min(cap, 200))])

    most, halved = fit_most(render, 200), fit(render, 200)
    assert card_bytes(most) <= MAX_CARD_BYTES < card_bytes(render(len(most["body"]) + 1))
    assert len(most["body"]) > len(halved["body"])  # halving alone stops well short of what fits
    assert len(fit_most(render, 10)["body"]) == 10
    with pytest.raises(CardTooLarge):
        fit_most(lambda cap: card([text("x" * MAX_CARD_BYTES)]), 5)
