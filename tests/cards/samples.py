"""Sample views (Chinese data) for every card, parameterised by the text used for user-supplied names."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cards.alert import build_alert_card
from cards.customer import build_customer_summary_card
from cards.error import build_error_card
from cards.help import build_help_card
from cards.search import build_choice_card, build_search_results_card
from cards.suggestion import build_applied_card, build_suggestion_card
from cards.views import (
    AlertReason,
    AlertView,
    AppliedCardView,
    AppliedItem,
    ChoiceView,
    CustomerHit,
    CustomerSummaryView,
    DimensionView,
    SearchResultsView,
    SuggestionCardView,
    SuggestionItem,
    TagView,
)
from core.types import Customer, SuggestionStatus
from tests.cards.conftest import CONTRACT_END, NOW

HELP = [
    ("tag 客户 +标签 -标签", "Add or remove tags", "添加或移除标签"),
    ("find 关键词", "Search customers", "搜索客户"),
]


def customer(name: str = "ABC公司", cid: int = 7) -> Customer:
    return Customer(
        id=cid, name=name, company="ABC集团", owner="张三", region="华东", contract_end=CONTRACT_END
    )


def summary(name: str = "询价客户", manager: bool = False) -> CustomerSummaryView:
    stage = DimensionView(
        name="需求阶段",
        tags=(
            TagView(name, "需求阶段", color="#2F80ED", expires_at=NOW + timedelta(days=3)),
            TagView("比价中", "需求阶段", level=2, parent=name),
        ),
    )
    value = DimensionView(name="价值等级", tags=(TagView("VIP客户", "价值等级", color="#F2C94C"),))
    risk = DimensionView(
        name="风险与问题", tags=(TagView("高危流失", "风险与问题", sensitive=True),), sensitive=True
    )
    return CustomerSummaryView(customer(name), (stage, risk, value), viewer_sees_sensitive=manager)


def suggestions(name: str = "询价客户", decided: bool = False) -> SuggestionCardView:
    first = SuggestionItem(1, name, "需求阶段", ("报价",), f"请给我们{name}报价", 0.9)
    second = SuggestionItem(2, "紧急工单", "风险与问题", ("加急",), "这个问题请加急处理", 0.8)
    if decided:
        at = NOW - timedelta(minutes=5)
        first = SuggestionItem(
            1, name, "需求阶段", ("报价",), "报价", 0.9, SuggestionStatus.ACCEPTED, "李四", at
        )
    return SuggestionCardView(7, name, (first, second))


def all_cards(name: str = "询价客户", now: datetime = NOW) -> list[tuple[str, dict[str, Any]]]:
    """Every card kind, with `name` wherever a customer, tag or free text goes."""
    hit = CustomerHit(customer(name), (TagView(name, "需求阶段", color="#27AE60"),))
    return [
        ("summary-agent", build_customer_summary_card(summary(name), now)),
        ("summary-manager", build_customer_summary_card(summary(name, manager=True), now, "en")),
        ("suggestion", build_suggestion_card(suggestions(name), now)),
        ("suggestion-decided", build_suggestion_card(suggestions(name, decided=True), now)),
        (
            "applied",
            build_applied_card(
                AppliedCardView(7, name, (AppliedItem(11, name, "需求阶段", ("退款",), expires_at=now),)), now
            ),
        ),
        (
            "search",
            build_search_results_card(SearchResultsView(name, (hit,), total=23, page=2, page_size=10), now),
        ),
        (
            "choice",
            build_choice_card(ChoiceView(name, (customer(name, 1), customer(name + "2", 2)), {"cmd": name})),
        ),
        ("help", build_help_card([*HELP, (name, name, name)])),
        ("error", build_error_card(f"找不到客户 {name}", hint=f"试试 find {name}", title=name)),
        (
            "alert",
            build_alert_card(
                AlertView(5, name, 7, name, (AlertReason(f"服务到期前30天未续费 {name}", 0.6),), now), now
            ),
        ),
        (
            "digest-page",
            build_alert_card(
                AlertView(
                    6,
                    "45 个标签即将到期",
                    7,
                    f"{name} 等",
                    tuple(AlertReason(f"{name} · {name} {i}天后到期", 0.5, 7 + i) for i in range(20)),
                    now,
                    page=2,
                    pages=3,
                ),
                now,
            ),
        ),
    ]
