"""Pure alert selection: quiet hours, recipients, churn signals and score, expiry digests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.alerts.selection import (
    ChurnRules,
    ChurnWeights,
    CustomerFacts,
    DigestBuilder,
    ExpiringTag,
    ExpiryRules,
    HeldTag,
    QuietHours,
    assess_churn,
    churn_notice,
    dedupe_key,
    digest_notice,
    recipients_for,
    release_time,
)
from core.types import Role, User

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 3, 10, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def test_quiet_hours_hold_until_local_morning() -> None:
    quiet = QuietHours.parse("22:00-08:00")
    assert quiet is not None
    late = datetime(2025, 3, 10, 23, 30, tzinfo=SH)
    early = datetime(2025, 3, 11, 6, 0, tzinfo=SH)
    day = datetime(2025, 3, 11, 12, 0, tzinfo=SH)
    assert release_time(late, quiet, SH) == datetime(2025, 3, 11, 8, 0, tzinfo=SH)
    assert release_time(early, quiet, SH) == datetime(2025, 3, 11, 8, 0, tzinfo=SH)
    assert release_time(day, quiet, SH) == day
    assert release_time(late, None, SH) == late
    assert QuietHours.parse("off") is None
    with pytest.raises(ValueError, match="HH:MM"):
        QuietHours.parse("晚上十点")


def test_recipients_are_owner_and_managers_of_the_region() -> None:
    managers = [
        User("王经理", Role.MANAGER, ("华东",)),
        User("李总", Role.MANAGER, ()),
        User("赵经理", Role.MANAGER, ("华南",)),
    ]
    assert recipients_for("小张", "华东", managers) == ("小张", "王经理", "李总")
    assert recipients_for("", "华北", managers) == ("李总",)
    assert recipients_for("李总", "华南", managers) == ("李总", "赵经理")


def _facts(**kw: object) -> CustomerFacts:
    base: dict[str, object] = {
        "customer_id": 7,
        "name": "杭州云帆科技",
        "owner": "小张",
        "region": "华东",
        "contract_end": None,
        "created_at": NOW - timedelta(days=400),
        "last_contact_at": NOW - timedelta(days=2),
    }
    base.update(kw)
    return CustomerFacts(**base)  # type: ignore[arg-type]


def test_churn_score_is_the_sum_of_weighted_reasons() -> None:
    rules = ChurnRules(weights=ChurnWeights.of([("contract_end", 0.4), ("silence", 0.3)]), threshold=0.6)
    facts = _facts(contract_end=date(2025, 3, 25), last_contact_at=NOW - timedelta(days=45))
    result = assess_churn(facts, rules, NOW, SH)
    assert result is not None
    assert result.score == pytest.approx(0.7)
    assert [r.signal for r in result.reasons] == ["contract_end", "silence"]
    assert "15天后到期" in result.reasons[0].text and "未续费" in result.reasons[0].text
    assert "45天没有对话" in result.reasons[1].text
    notice = churn_notice(result, NOW)
    assert notice.alert_key == "churn:7:contract_end+silence"
    assert "0.70" in notice.title


def test_renewal_tag_cancels_the_contract_signal_and_threshold_holds() -> None:
    rules = ChurnRules()
    renewed = _facts(contract_end=date(2025, 3, 25), watched_tags=(HeldTag("续费意向", NOW),))
    assert assess_churn(renewed, rules, NOW, SH) is None
    only_contract = _facts(contract_end=date(2025, 3, 25))
    assert assess_churn(only_contract, rules, NOW, SH) is None  # 0.4 < 0.6


def test_risk_tags_negative_talk_and_deleted_agent() -> None:
    facts = _facts(
        watched_tags=(HeldTag("竞品对比", NOW - timedelta(days=3)), HeldTag("售后工单", NOW - timedelta(days=90))),
        negative_suggestions=2,
        agent_removed_at=NOW - timedelta(days=1),
    )
    result = assess_churn(facts, ChurnRules(), NOW, SH)
    assert result is not None
    signals = {r.signal: r for r in result.reasons}
    assert set(signals) == {"agent_deleted", "risk_tags", "negative"}
    assert "竞品对比" in signals["risk_tags"].text and "售后工单" not in signals["risk_tags"].text
    assert result.score == pytest.approx(0.9)


def test_unknown_weight_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown churn signal 'mood'"):
        ChurnWeights.of([("mood", 0.3)])
    with pytest.raises(ValueError, match="between 0 and 1"):
        ChurnWeights.of([("silence", 3)])


def _expiring(aid: int, cid: int, tag: str, days: float, owner: str = "小张") -> ExpiringTag:
    return ExpiringTag(
        aid, cid, f"客户{cid}", owner, "华东", "stage", tag, NOW - timedelta(days=60), NOW + timedelta(days=days)
    )


def test_one_digest_per_recipient_per_day_not_per_tag() -> None:
    managers = [User("王经理", Role.MANAGER, ("华东",))]
    builder = DigestBuilder(managers, ExpiryRules(default_days=7, per_tag={"试用中": 3}), NOW, SH)
    assert builder.add(_expiring(1, 1, "询价客户", 6.9))  # enters its 7-day window today
    assert builder.add(_expiring(2, 2, "方案评估", 6.8))
    assert not builder.add(_expiring(3, 3, "方案评估", 8.5))  # not yet
    assert builder.add(_expiring(4, 4, "试用中", 2.9))  # per-tag window: 3 days
    assert not builder.add(_expiring(5, 5, "试用中", 5))
    assert sorted(builder.digests) == ["小张", "王经理"]
    digest = builder.digests["王经理"]
    assert digest.count == 3 and digest.day == date(2025, 3, 10)
    notice = digest_notice(digest, NOW, SH)
    assert notice.title.startswith("3 个标签即将到期")
    assert "试用中" in notice.reasons[0].text  # most urgent first
    assert dedupe_key("expiry", "*", "王经理", "2025-03-10") == "expiry|*|王经理|2025-03-10"


def test_a_managers_only_tag_reaches_managers_but_never_an_agent_owner() -> None:
    managers = [User("王经理", Role.MANAGER, ("华东",))]
    builder = DigestBuilder(managers, ExpiryRules(default_days=7), NOW, SH, managers_only={"risk"})
    hidden = dataclasses.replace(_expiring(1, 1, "高危流失", 3), dimension="risk")
    assert builder.add(hidden)
    assert builder.add(_expiring(2, 2, "询价客户", 3))
    assert builder.digests["王经理"].count == 2
    agent = builder.digests["小张"]  # the owner, an agent: neither the tag nor a count of it
    assert agent.count == 1 and [i.tag for i in agent.items] == ["询价客户"]
    assert digest_notice(agent, NOW, SH).title.startswith("1 个标签")


def test_digest_keeps_memory_bounded_but_counts_everything() -> None:
    builder = DigestBuilder([], ExpiryRules(max_items=3), NOW, SH)
    for i in range(50):
        builder.add(_expiring(i, i, "询价客户", 6.99 - i / 1000))
    digest = builder.digests["小张"]
    assert digest.count == 50 and len(digest.items) == 3
    assert sorted(digest_notice(digest, NOW, SH).assignment_ids) == list(range(50))  # counted ones covered too
    notice = digest_notice(digest, NOW, SH)
    assert notice.unlisted == 47 and "另有" not in notice.title


def test_quiet_hours_window_not_wrapping() -> None:
    quiet = QuietHours(time(12, 0), time(13, 0))
    assert quiet.contains(time(12, 30)) and not quiet.contains(time(13, 0))
