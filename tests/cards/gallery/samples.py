"""Every card kind with hard data: long names, 25 tags, ASCII names with _ ( ) & #, both languages."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from cards.alert import build_alert_card
from cards.customer import build_customer_summary_card
from cards.error import build_error_card
from cards.help import build_help_card
from cards.labels import Lang
from cards.present import change_banner
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
from core.chat.commands import HELP_TOPICS
from core.chat.service import TagResult
from core.tags.assignments import TagChange
from core.tags.summary import CustomerSummary
from core.types import Customer, Role, SuggestionStatus, User
from tagging.policy import soft_cap_warning
from tests.cards.conftest import NOW

LONG_NAME = "博世（中国）投资有限公司华东区域采购与供应链管理中心（苏州工业园区分部）"
ASCII_NAME = "Bosch (China) R&D #2_Shanghai & Suzhou Joint Procurement Office (East)"
COLORS = ("#2F80ED", "#EB5757", "#27AE60", "#F2C94C", "#9B51E0", None)
Card = dict[str, Any]


def hard_customer(cid: int = 7, name: str = ASCII_NAME) -> Customer:
    return Customer(
        id=cid,
        name=name,
        company="Bosch_Group (Asia) & Partners #1 Holding Co., Ltd. 博世集团亚太区控股有限公司",
        owner="li_ming@contoso-china.onmicrosoft.com",
        region="华东 (East_China) & 长三角",
        crm_id="SF_0012-A_(2025)#77",
        contract_end=date(2025, 3, 20),
    )


def tags_25(now: datetime = NOW) -> tuple[DimensionView, ...]:
    """25 tags over four dimensions: long names, sub-tags, near and far expiries, rule reasons, a sensitive one."""
    stage = [
        TagView(f"询价客户_{i} (Quote & Price #{i}) 需要在本季度内完成报价", "需求阶段", COLORS[i % 6], level=1)
        for i in range(8)
    ]
    stage[0] = TagView("询价客户", "需求阶段", "#2F80ED", expires_at=now + timedelta(days=3))
    stage[1] = TagView("比价中_(A&B)#1", "需求阶段", "#EB5757", expires_at=now + timedelta(days=90))
    subs = [
        TagView(f"子标签_{i} 长长长长长长长长长长长长长长名称 (sub #{i})", "需求阶段", level=2, parent="询价客户")
        for i in range(6)
    ]
    value = [
        TagView(f"VIP客户_{i}", "价值等级", COLORS[i % 6], expires_at=now + timedelta(days=i * 5)) for i in range(6)
    ]
    value[2] = TagView(
        "大客户 (Key Account) & 战略合作伙伴 #1",
        "价值等级",
        "#F2C94C",
        reason="规则“年采购额超过 100 万”：2024 年采购额 ¥1,234,567.89",
    )
    risk = [TagView(f"高危流失_{i}", "风险与问题", "#EB5757", sensitive=True) for i in range(3)]
    other = [TagView("WeChat_微信群 (group#9)", "渠道来源", None), TagView("线下展会 2025 上海", "渠道来源", "#27AE60")]
    return (
        DimensionView("需求阶段 (Stage)", tuple(stage + subs)),
        DimensionView("价值等级", tuple(value)),
        DimensionView("风险与问题", tuple(risk), sensitive=True),
        DimensionView("渠道来源_(Source)", tuple(other)),
    )


def summary_view(manager: bool, owner_name: str | None = "李明 (Li_Ming)") -> CustomerSummaryView:
    return CustomerSummaryView(hard_customer(), tags_25(), viewer_sees_sensitive=manager, owner_name=owner_name)


def tag_banner(lang: Lang) -> list[dict[str, Any]]:
    changes = (
        TagChange(7, "stage", "询价客户_(A&B)#1 需要在本季度内完成报价", "added", replaced=("比价中_(A&B)#1",)),
        TagChange(7, "value", "VIP客户_0", "renewed"),
        TagChange(7, "value", "沉默客户", "removed"),
    )
    summary = CustomerSummary(hard_customer(), (), 25, True)
    warning = soft_cap_warning(25) or ""
    result = TagResult(summary, User("u1", Role.AGENT), changes, (warning,))
    return change_banner(result, result.warnings, lang)


def suggestion_view(decided: bool) -> SuggestionCardView:
    excerpt = f"客户 {ASCII_NAME} 说：请尽快给我们报价，价格要比上次低 10%，另外退款_(refund) 的事情也要处理"
    items = [
        SuggestionItem(
            1,
            "询价客户_(Quote & Price)#1 长长长长名称",
            "需求阶段 (Stage)",
            ("报价", "价格", "price"),
            excerpt,
            0.93,
            color="#2F80ED",
        ),
        SuggestionItem(
            2, "售后工单 & 退款_refund", "风险与问题", ("退款",), excerpt, 0.61, color="#EB5757", learned=True
        ),
        SuggestionItem(3, "竞品对比 (Competitor)", "风险与问题", ("比上次低",), excerpt, 0.55),
    ]
    if decided:
        at = NOW - timedelta(minutes=5)
        items[0] = SuggestionItem(
            1,
            items[0].tag,
            items[0].dimension_name,
            items[0].matched,
            excerpt,
            0.93,
            SuggestionStatus.ACCEPTED,
            "王_经理 (Wang) & Co #1",
            at,
        )
        items[1] = SuggestionItem(
            2, items[1].tag, items[1].dimension_name, ("退款",), excerpt, 0.61, SuggestionStatus.REJECTED, "li_ming", at
        )
        items[2] = SuggestionItem(
            3, items[2].tag, items[2].dimension_name, ("比上次低",), excerpt, 0.55, SuggestionStatus.EXPIRED
        )
    return SuggestionCardView(7, ASCII_NAME, tuple(items))


def applied_view() -> AppliedCardView:
    at = NOW - timedelta(minutes=3)
    return AppliedCardView(
        7,
        LONG_NAME,
        (
            AppliedItem(
                11,
                "售后工单 & 退款_refund (after-sales #1)",
                "风险与问题",
                ("退款", "refund"),
                "#EB5757",
                NOW + timedelta(days=30),
            ),
            AppliedItem(
                12,
                "询价客户_(Quote)",
                "需求阶段 (Stage)",
                ("报价",),
                "#2F80ED",
                undone_by="王_经理 (Wang) & Co #1",
                undone_at=at,
            ),
        ),
    )


def search_view(lang: Lang) -> SearchResultsView:
    hits = []
    for i in range(10):
        c = hard_customer(100 + i, f"{LONG_NAME}_{i}" if i % 2 else f"{ASCII_NAME} #{i}")
        every = tuple(t for d in tags_25() for t in d.tags)
        tags = (*every[i : i + 9], every[17], every[-2])  # the two the query names come last
        hits.append(CustomerHit(c, tags, frozenset({"VIP客户_3", "WeChat_微信群 (group#9)"})))
    query = "VIP客户_3 OR “WeChat_微信群 (group#9)”"
    return SearchResultsView(query, tuple(hits), total=23, page=1, page_size=10)


def choice_view() -> ChoiceView:
    names = [
        LONG_NAME,
        ASCII_NAME,
        "华为技术有限公司",
        "华为技术有限公司",
        "上海浦东发展银行股份有限公司信用卡中心",
        "A&B_(C)#D",
    ]
    candidates = tuple(
        Customer(
            20 + i,
            n,
            company=["华为技术有限公司", "Huawei_Tech (Shenzhen) & Co #2", "", n][i % 4],
            region=["华东", "华南 (South_China)", "", "西北"][i % 4],
            crm_id=["SF_0012-A", "", "CRM_(77)#3", "SF_0099-B_2025"][i % 4],
        )
        for i, n in enumerate(names)
    )
    return ChoiceView("华为", candidates, {"command": "tag 华为 +VIP客户"})


def alert_views() -> list[tuple[str, AlertView]]:
    churn = AlertView(
        9,
        "高危流失预警 · 风险分 0.85",
        7,
        ASCII_NAME,
        (
            AlertReason("合同将于 2025-03-20 到期（19 天后），尚无续费意向 (renewal_intent)", 0.4),
            AlertReason("已 45 天没有联系 & 没有任何消息 #silence", 0.2),
            AlertReason("持有风险标签：售后工单 & 退款_refund、竞品对比 (Competitor)", 0.25),
            AlertReason("近 30 天 1 条负面消息", 0.15),
        ),
        NOW - timedelta(hours=2),
        owner="李明 (li_ming@contoso-china.onmicrosoft.com)",
    )
    acked = AlertView(
        9, churn.title, 7, ASCII_NAME, churn.reasons, churn.raised_at, "王_经理 (Wang) & Co #1", NOW, owner="李明"
    )
    rows = tuple(
        AlertReason(
            f"{[LONG_NAME, ASCII_NAME][i % 2]} · 询价客户_(A&B)#{i} {i}天后到期（2025-03-{2 + i:02d}）",
            round(max(0.1, 1 - i / 10), 2),
            100 + i,
        )
        for i in range(10)
    )
    digest = AlertView(10, "57 个标签即将到期", 100, f"{LONG_NAME} 等", rows, NOW, unlisted=47)
    every = tuple(  # the digest opened with 显示全部标签: all 57 rows, one of them no longer held
        AlertReason(
            f"{[LONG_NAME, ASCII_NAME][i % 2]} · 询价客户_(A&B)#{i} "
            + ("已移除" if i == 3 else f"{i % 7}天后到期（2025-03-{2 + i % 7:02d}）"),
            round(max(0.1, 1 - (i % 7) / 10), 2),
            100 + i,
        )
        for i in range(57)
    )
    # Opened in full it pages 20 rows at a time: a middle page has 上一页 and 下一页, the last only 上一页.
    full = AlertView(10, "57 个标签即将到期", 100, f"{LONG_NAME} 等", every[20:40], NOW, page=2, pages=3)
    last = AlertView(10, "57 个标签即将到期", 100, f"{LONG_NAME} 等", every[40:], NOW, page=3, pages=3)
    return [
        ("alert-churn", churn),
        ("alert-acked", acked),
        ("alert-digest", digest),
        ("alert-digest-all", full),
        ("alert-digest-all-last", last),
    ]


def gallery(now: datetime = NOW) -> list[tuple[str, Card]]:
    """(kind, card) for every card the bot sends, in Chinese and, where it differs, English."""
    out: list[tuple[str, Card]] = [
        ("summary-agent", build_customer_summary_card(summary_view(False), now)),
        ("summary-manager", build_customer_summary_card(summary_view(True, None), now)),
        ("summary-manager-en", build_customer_summary_card(summary_view(True), now, "en")),
        ("summary-empty", build_customer_summary_card(CustomerSummaryView(hard_customer(), ()), now)),
        ("tag-result", build_customer_summary_card(summary_view(False), now, "zh", tag_banner("zh"))),
        ("tag-result-en", build_customer_summary_card(summary_view(False), now, "en", tag_banner("en"))),
        ("suggestion", build_suggestion_card(suggestion_view(False), now)),
        ("suggestion-decided", build_suggestion_card(suggestion_view(True), now)),
        ("suggestion-en", build_suggestion_card(suggestion_view(False), now, "en")),
        ("applied", build_applied_card(applied_view(), now)),
        ("search", build_search_results_card(search_view("zh"), now)),
        ("search-en", build_search_results_card(search_view("en"), now, "en")),
        ("choice", build_choice_card(choice_view())),
        ("choice-en", build_choice_card(choice_view(), "en")),
        ("help", build_help_card(HELP_TOPICS)),
        ("help-en", build_help_card(HELP_TOPICS, "en")),
        (
            "error",
            build_error_card("找不到客户“Bosch (China) R&D #2_Shanghai”", "发送“帮助”查看命令；客户名可以只写一部分"),
        ),
        (
            "error-en",
            build_error_card(
                "no customer matches 'Bosch_(China) R&D #2'", "send help (帮助) for the list of commands", lang="en"
            ),
        ),
    ]
    out.extend((kind, build_alert_card(view, now)) for kind, view in alert_views())
    out.append(("alert-churn-en", build_alert_card(alert_views()[0][1], now, "en")))
    return out
