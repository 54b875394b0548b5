"""Assignments, suggestions, summary, search, history and users on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.ports import AllOf, AnyOf, HasTag, NoneOf, TagQuery
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules, apply_tag, expire_lapsed, remove_tag
from core.tags.customers import customer_history, resolve_customer
from core.tags.expression import evaluate
from core.tags.search import search_customers
from core.tags.suggestions import decide_suggestion, suggest_for_message
from core.tags.summary import customer_summary
from core.tags.users import get_user, set_role
from core.types import EventKind, Role, Source, SuggestionStatus, User
from storage.database import Database
from tagging.matcher import Matcher
from tagging.policy import PolicyRefusal, UnknownTagError
from tagging.taxonomy import Taxonomy

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 3, 1, 9, 30, tzinfo=SHANGHAI)
RULES = TaggingRules(tz=SHANGHAI, hard_cap=100)
AGENT = User("agent-1", Role.AGENT)
MANAGER = User("mgr-1", Role.MANAGER, ("华东",))


async def _customer(db: Database, name: str = "上海明远科技", **kw: str) -> int:
    async with db.unit_of_work() as uow:
        return (await uow.customers.add(CustomerDraft(name=name, **kw), NOW)).id  # type: ignore[arg-type]


async def _apply(
    db: Database, tax: Taxonomy, cid: int, tag: str, now: datetime = NOW, rules: TaggingRules = RULES
):
    async with db.unit_of_work() as uow:
        return await apply_tag(uow, tax, rules, cid, tag, actor="agent-1", source=Source.MANUAL, now=now)


async def test_exclusive_dimension_replaces_and_records_previous(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    cid = await _customer(database)
    await _apply(database, sample_taxonomy, cid, "普通客户")
    change = await _apply(database, sample_taxonomy, cid, "VIP客户", NOW + timedelta(minutes=1))
    assert change.outcome == "added" and change.replaced == ("普通客户",)
    async with database.unit_of_work() as uow:
        held = [a.tag for a in await uow.assignments.active_for(cid)]
        events = await customer_history(uow, sample_taxonomy, cid, MANAGER)
    assert held == ["VIP客户"]
    assert events[0].kind is EventKind.REPLACED and events[0].previous == "普通客户"


async def test_hard_cap_refuses_and_soft_cap_warns(database: Database, sample_taxonomy: Taxonomy) -> None:
    cid = await _customer(database)
    small = TaggingRules(tz=SHANGHAI, hard_cap=2)
    await _apply(database, sample_taxonomy, cid, "企业客户", rules=small)
    await _apply(database, sample_taxonomy, cid, "活跃客户", rules=small)
    with pytest.raises(PolicyRefusal, match="上限 2"):
        await _apply(database, sample_taxonomy, cid, "询价客户", rules=small)
    async with database.unit_of_work() as uow:
        assert len(await uow.assignments.active_for(cid)) == 2


async def test_unknown_tag_lists_close_matches(database: Database, sample_taxonomy: Taxonomy) -> None:
    cid = await _customer(database)
    with pytest.raises(UnknownTagError) as info:
        await _apply(database, sample_taxonomy, cid, "询价")
    assert "询价客户" in info.value.close


async def test_today_tag_lapses_at_shanghai_midnight(database: Database, sample_taxonomy: Taxonomy) -> None:
    cid = await _customer(database)
    late = datetime(2025, 3, 1, 23, 50, tzinfo=SHANGHAI)
    change = await _apply(database, sample_taxonomy, cid, "今日已联系", late)
    assert change.expires_at == datetime(2025, 3, 2, 0, 0, tzinfo=SHANGHAI)
    async with database.unit_of_work() as uow:
        assert await expire_lapsed(uow, datetime(2025, 3, 1, 23, 59, tzinfo=SHANGHAI)) == 0
        assert await expire_lapsed(uow, datetime(2025, 3, 2, 0, 0, 1, tzinfo=SHANGHAI)) == 1
        assert await uow.assignments.active_for(cid) == []
        assert (await uow.events.for_customer(cid, 0, 10))[0].kind is EventKind.EXPIRED


async def test_ttl_expiry_and_renewal(database: Database, sample_taxonomy: Taxonomy) -> None:
    cid = await _customer(database)
    first = await _apply(database, sample_taxonomy, cid, "询价客户")
    assert first.expires_at == NOW + timedelta(days=90)
    again = await _apply(database, sample_taxonomy, cid, "询价客户", NOW + timedelta(days=10))
    assert again.outcome == "renewed" and again.expires_at == NOW + timedelta(days=100)


async def test_agent_never_sees_manager_only_tags(database: Database, sample_taxonomy: Taxonomy) -> None:
    cid = await _customer(database)
    await _apply(database, sample_taxonomy, cid, "VIP客户")
    await _apply(database, sample_taxonomy, cid, "高危流失")
    await _apply(database, sample_taxonomy, cid, "企业客户")
    async with database.unit_of_work() as uow:
        agent_view = await customer_summary(uow, sample_taxonomy, cid, AGENT, NOW)
        manager_view = await customer_summary(uow, sample_taxonomy, cid, MANAGER, NOW)
        agent_history = await customer_history(uow, sample_taxonomy, cid, AGENT)
    assert [g.key for g in agent_view.groups] == ["basic", "value"] and agent_view.count == 2
    assert [g.key for g in manager_view.groups] == ["basic", "value", "risk"] and manager_view.count == 3
    assert all(e.dimension != "risk" for e in agent_history)
    with pytest.raises(UnknownTagError):  # an agent cannot even name a hidden tag
        async with database.unit_of_work() as uow:
            await remove_tag(
                uow,
                sample_taxonomy,
                cid,
                "高危流失",
                actor="a",
                source=Source.MANUAL,
                now=NOW,
                sees_sensitive=False,
            )


async def test_search_expressions_match_evaluate(database: Database, sample_taxonomy: Taxonomy) -> None:
    holdings = {
        "甲公司": ["VIP客户", "询价客户"],
        "乙公司": ["VIP客户", "询价客户", "沉默客户"],
        "丙公司": ["普通客户", "询价客户"],
        "丁公司": ["沉默客户"],
        "戊公司": [],
    }
    for name, tags in holdings.items():
        cid = await _customer(database, name)
        for tag in tags:
            await _apply(database, sample_taxonomy, cid, tag)
    expressions = [
        "VIP客户 AND 询价客户 NOT 沉默客户",
        "VIP客户 OR 沉默客户",
        "NOT 询价客户",
        "(VIP客户 OR 普通客户) AND NOT 沉默客户",
        "vip客户",
        "VIP客户 OR NOT 询价客户",
        "NOT (VIP客户 AND 询价客户)",
        "NOT 询价客户 NOT 沉默客户",
        "(VIP客户 NOT 沉默客户) OR (沉默客户 NOT 询价客户)",
        "询价客户 AND (VIP客户 OR NOT 普通客户) AND 询价客户",
    ]
    for text in expressions:
        from core.tags.expression import parse_expression

        expr = parse_expression(text)
        expected = sorted(n for n, tags in holdings.items() if evaluate(expr, {t.casefold() for t in tags}))
        async with database.unit_of_work() as uow:
            page = await search_customers(uow, sample_taxonomy, text, MANAGER, NOW)
        assert sorted(c.name for c in page.customers) == expected, text
        assert page.total == len(expected)
    async with database.unit_of_work() as uow:
        first = await search_customers(uow, sample_taxonomy, "询价客户", MANAGER, NOW, skip=0, count=2)
        rest = await search_customers(uow, sample_taxonomy, "询价客户", MANAGER, NOW, skip=2, count=2)
        beyond = await search_customers(uow, sample_taxonomy, "询价客户 NOT 沉默客户", MANAGER, NOW, skip=5, count=2)
    assert first.total == 3 and len(first.customers) == 2 and len(rest.customers) == 1
    assert beyond.total == 2 and beyond.customers == ()
    assert {c.id for c in first.customers}.isdisjoint(c.id for c in rest.customers)


async def test_search_queries_built_by_callers(database: Database, sample_taxonomy: Taxonomy) -> None:
    """Empty and one-part groups, as sync jobs build them, and a tag listed twice count each customer once."""
    tagged = await _customer(database, "甲公司")
    await _apply(database, sample_taxonomy, tagged, "VIP客户")
    await _apply(database, sample_taxonomy, tagged, "询价客户")
    bare = await _customer(database, "乙公司")
    vip, inquiry = HasTag(("vip客户",)), HasTag(("询价客户",))
    cases: list[tuple[TagQuery, list[int]]] = [
        (AllOf(()), [tagged, bare]),
        (AnyOf(()), []),
        (AnyOf((vip,)), [tagged]),
        (AllOf((vip,)), [tagged]),
        (HasTag(("vip客户", "询价客户")), [tagged]),
        (AnyOf((HasTag(("vip客户", "询价客户")),)), [tagged]),
        (AnyOf((vip, inquiry)), [tagged]),
        (NoneOf(AllOf(())), []),
        (NoneOf(AnyOf(())), [tagged, bare]),
        (AllOf((NoneOf(vip), NoneOf(inquiry))), [bare]),
    ]
    async with database.unit_of_work() as uow:
        for query, expected in cases:
            found = await uow.assignments.search(query, NOW, None, 0, 10, count_up_to=10)
            assert found == (expected, len(expected)), query


async def test_agent_search_cannot_probe_hidden_tags(database: Database, sample_taxonomy: Taxonomy) -> None:
    cid = await _customer(database)
    await _apply(database, sample_taxonomy, cid, "高危流失")
    async with database.unit_of_work() as uow:
        with pytest.raises(UnknownTagError):
            await search_customers(uow, sample_taxonomy, "NOT 高危流失", AGENT, NOW)
        assert (await search_customers(uow, sample_taxonomy, "高危流失", MANAGER, NOW)).total == 1


async def test_search_ignores_lapsed_tags(database: Database, sample_taxonomy: Taxonomy) -> None:
    cid = await _customer(database)
    await _apply(database, sample_taxonomy, cid, "今日已联系")
    async with database.unit_of_work() as uow:
        assert (await search_customers(uow, sample_taxonomy, "今日已联系", AGENT, NOW)).total == 1
        tomorrow = NOW + timedelta(days=1)
        assert (await search_customers(uow, sample_taxonomy, "今日已联系", AGENT, tomorrow)).total == 0


async def test_suggestions_from_message_are_idempotent(database: Database, sample_taxonomy: Taxonomy) -> None:
    cid = await _customer(database)
    matcher = Matcher.build(sample_taxonomy)
    text = "你们的报价单发我一下，另外上次的退款还没到账"
    async with database.unit_of_work() as uow:
        outcome = await suggest_for_message(
            uow, matcher, sample_taxonomy, RULES, cid, "teams:msg-1", text, NOW
        )
    assert [c.tag for c in outcome.applied] == ["售后工单"]
    assert [s.tag for s in outcome.pending] == ["询价客户"]
    async with database.unit_of_work() as uow:
        again = await suggest_for_message(uow, matcher, sample_taxonomy, RULES, cid, "teams:msg-1", text, NOW)
        assert again.duplicate and not again.applied and not again.pending
        assert len(await uow.events.for_customer(cid, 0, 50)) == 1


async def test_concurrent_same_message_key_stores_one_row(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    cid = await _customer(database)
    matcher = Matcher.build(sample_taxonomy)

    async def once() -> None:
        async with database.unit_of_work() as uow:
            await suggest_for_message(
                uow, matcher, sample_taxonomy, RULES, cid, "wecom:m-9", "多少钱？要加急", NOW
            )

    await asyncio.gather(once(), once())
    async with database.unit_of_work() as uow:
        rows = await uow.suggestions.for_message("wecom:m-9")
        events = await uow.events.for_customer(cid, 0, 50)
    assert sorted(r.tag for r in rows) == ["紧急工单", "询价客户"]
    assert [e.tag for e in events] == ["紧急工单"]


async def test_accept_and_reject_are_idempotent(database: Database, sample_taxonomy: Taxonomy) -> None:
    cid = await _customer(database)
    matcher = Matcher.build(sample_taxonomy)
    async with database.unit_of_work() as uow:
        out = await suggest_for_message(uow, matcher, sample_taxonomy, RULES, cid, "m-2", "请给个报价", NOW)
    (pending,) = out.pending
    async with database.unit_of_work() as uow:
        first = await decide_suggestion(
            uow, sample_taxonomy, RULES, pending.id, accept=True, actor="张三", now=NOW
        )
    assert not first.already and first.change is not None and first.change.outcome == "added"
    later = NOW + timedelta(minutes=5)
    async with database.unit_of_work() as uow:
        second = await decide_suggestion(
            uow, sample_taxonomy, RULES, pending.id, accept=False, actor="李四", now=later
        )
    assert second.already and second.suggestion.status is SuggestionStatus.ACCEPTED
    assert second.suggestion.decided_by == "张三" and second.suggestion.decided_at == NOW


async def test_resolve_customer_forgiving(database: Database) -> None:
    await _customer(database, "上海明远科技有限公司", crm_id="CRM-001")
    await _customer(database, "上海明远物流")
    await _customer(database, "杭州云栖")
    async with database.unit_of_work() as uow:
        assert (await resolve_customer(uow, "CRM-001")).customer is not None
        assert (await resolve_customer(uow, "杭州")).customer is not None
        several = await resolve_customer(uow, "上海明远")
        assert several.customer is None and len(several.candidates) == 2
        assert (await resolve_customer(uow, "不存在的公司")).candidates == ()


async def test_set_role_and_default_agent(database: Database) -> None:
    async with database.unit_of_work() as uow:
        assert (await get_user(uow, "u-new")).role is Role.AGENT
        await set_role(uow, "u-9", Role.MANAGER, ["华东", "华南", "华东"], NOW)
    async with database.unit_of_work() as uow:
        user = await get_user(uow, "u-9")
        assert user.role is Role.MANAGER and user.regions == ("华东", "华南")
        await set_role(uow, "u-9", Role.AGENT, [], NOW)
    async with database.unit_of_work() as uow:
        assert (await get_user(uow, "u-9")).role is Role.AGENT


def test_now_is_timezone_aware() -> None:
    assert NOW.astimezone(UTC).hour == 1
