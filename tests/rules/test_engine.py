"""Pure evaluation: each condition over facts at `now`, with the facts that satisfied it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

from core.rules.engine import Facts, HeldFact, evaluate, may_fire_for_message
from tagging.rules import (
    AddTag,
    All,
    Any_,
    ChurnScore,
    Compare,
    Events,
    Field,
    HasTag,
    LacksTag,
    MessageTag,
    Not,
    Rule,
    SilentDays,
    Trigger,
)

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


def rule(condition):  # type: ignore[no-untyped-def]
    return Rule("r", Trigger("daily"), condition, (AddTag("活跃客户"),))


def facts(**kw):  # type: ignore[no-untyped-def]
    return Facts(customer_id=1, name="甲", **kw)


def test_event_counts_and_sums_in_a_window() -> None:
    f = facts(events=MappingProxyType({("purchase", 30): (4, 520.0)}))
    fired = evaluate(rule(Events("purchase", 30, count=Compare(">", 3))), f, NOW, TZ)
    assert fired is not None and fired.evidence == ("30 天内 purchase 4 次（> 3）",)
    assert evaluate(rule(Events("purchase", 30, count=Compare(">", 4))), f, NOW, TZ) is None
    assert evaluate(rule(Events("purchase", 30, sum=Compare(">=", 500))), f, NOW, TZ) is not None
    assert evaluate(rule(Events("click", 30, count=Compare(">=", 1))), f, NOW, TZ) is None


def test_contract_end_within_days_and_birthday_next_month() -> None:
    f = facts(
        contract_end=date(2026, 12, 16), attributes=MappingProxyType({"birthday": "1980-01-05", "累计消费": "6,000"})
    )
    fired = evaluate(rule(All((Field("contract_end", within_days=30), LacksTag("续费意向")))), f, NOW, TZ)
    assert fired is not None and fired.evidence == ("合同到期 2026-12-16，10 天后", "没有标签 续费意向")
    assert evaluate(rule(Field("contract_end", within_days=5)), f, NOW, TZ) is None
    assert evaluate(rule(Field("birthday", month="next")), f, NOW, TZ) is not None  # December → January
    assert evaluate(rule(Field("birthday", month="this")), f, NOW, TZ) is None
    assert evaluate(rule(Field("累计消费", compare=Compare(">=", 5000))), f, NOW, TZ) is not None
    past = facts(contract_end=date(2026, 12, 1))
    assert evaluate(rule(Field("contract_end", within_days=30)), past, NOW, TZ) is None


def test_tags_held_since_messages_churn_and_silence() -> None:
    held = MappingProxyType({"vip客户": HeldFact("value", "VIP客户", NOW - timedelta(days=10))})
    f = facts(
        tags=held,
        message_tags=frozenset({"紧急工单"}),
        churn_score=0.7,
        last_message_at=NOW - timedelta(days=40),
        region="华东",
    )
    assert evaluate(rule(HasTag("VIP客户", min_days=7)), f, NOW, TZ) is not None
    assert evaluate(rule(HasTag("VIP客户", max_days=7)), f, NOW, TZ) is None
    assert evaluate(rule(MessageTag("紧急工单")), f, NOW, TZ) is not None
    assert evaluate(rule(ChurnScore(Compare(">=", 0.6))), f, NOW, TZ) is not None
    assert evaluate(rule(SilentDays(Compare(">=", 30))), f, NOW, TZ) is not None
    assert evaluate(rule(Field("region", in_=("华南", "华北"))), f, NOW, TZ) is None
    either = Any_((Field("region", in_=("华南",)), Not(LacksTag("VIP客户"))))
    fired = evaluate(rule(either), f, NOW, TZ)
    assert fired is not None and fired.evidence[0].startswith("not (")


def test_event_counts_are_needed_only_when_the_other_conjuncts_hold() -> None:
    from core.rules.engine import Clock, may_fire

    birthday = rule(All((Field("birthday", month="next"), Events("purchase", 3650, sum=Compare(">=", 5000)))))
    clock = Clock(NOW, TZ)
    assert may_fire(birthday, facts(attributes=MappingProxyType({"birthday": "1980-01-05"})), clock)
    assert not may_fire(birthday, facts(attributes=MappingProxyType({"birthday": "1980-06-05"})), clock)
    assert may_fire(rule(Events("purchase", 30, count=Compare(">", 3))), facts(), clock)


def test_a_rule_needing_a_message_tag_the_message_missed_cannot_fire_and_is_skipped_unread() -> None:
    matched = frozenset({"询价客户"})
    urgent = MessageTag("紧急工单")
    vip = HasTag("VIP客户")
    assert not may_fire_for_message(rule(urgent), matched)
    assert not may_fire_for_message(rule(All((vip, urgent))), matched)
    assert not may_fire_for_message(rule(Any_((urgent, MessageTag("售后工单")))), matched)
    assert may_fire_for_message(rule(Any_((urgent, vip))), matched)  # the other branch may hold
    assert may_fire_for_message(rule(Not(urgent)), matched)  # holds precisely because it was missed
    assert may_fire_for_message(rule(All((vip, MessageTag("询价客户")))), matched)
    assert may_fire_for_message(rule(MessageTag("询价客户")), matched)
    # Whatever this check lets through, evaluate decides; whatever it skips, evaluate would refuse.
    f = facts(message_tags=matched)
    for condition in (urgent, All((vip, urgent)), Any_((urgent, MessageTag("售后工单")))):
        assert evaluate(rule(condition), f, NOW, TZ) is None
