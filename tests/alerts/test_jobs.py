"""Alert jobs end to end on SQLite and PostgreSQL, delivering through the fake WeCom API."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bots.wecom.alert_delivery import WeComAlertDeliverer
from core.alerts.actions import act_on_alert
from core.alerts.activity import note_message
from core.alerts.jobs import AlertJobs, drain_outbox, run_once, score_churn, warn_expiring
from core.alerts.outbox import OutboxPolicy
from core.alerts.ports import AlertStore, Delivery, DeliveryOutcome, OutboxMessage
from core.alerts.selection import QuietHours
from core.errors import NotAllowedError
from core.tags.assignments import TaggingRules
from core.types import EventKind, Source
from storage.database import Database
from tests.alerts.conftest import NOW, seed
from tests.wecom.fake_api import FakeWeComApi

SH = ZoneInfo("Asia/Shanghai")


def _jobs(store: AlertStore, taxonomy: Any, deliverers: dict[str, Any], quiet: bool = True) -> AlertJobs:
    policy = OutboxPolicy(quiet=QuietHours.parse("22:00-08:00") if quiet else None, tz=SH)
    return AlertJobs(store=store, taxonomy=lambda: taxonomy, deliverers=deliverers, outbox=policy, tz=SH)


def _sends(fake: FakeWeComApi) -> list[dict[str, Any]]:
    return [c.body or {} for c in fake.calls_to("message/send")]


async def test_run_once_expires_warns_scores_and_delivers_each_alert_once(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    seeded = await seed(database)
    jobs = _jobs(store, seeded["taxonomy"], {"wecom": wecom_deliverer})
    report = await run_once(jobs, NOW)

    assert report.expired.assignments == 1
    async with database.unit_of_work() as uow:
        events = await uow.events.for_customer(seeded["haiyue"], 0, 10)
        yunfan_tags = {a.tag: a for a in await uow.assignments.active_for(seeded["yunfan"])}
        yunfan_events = await uow.events.for_customer(seeded["yunfan"], 0, 10)
    assert [(e.kind, e.tag, e.source) for e in events] == [(EventKind.EXPIRED, "今日已联系", Source.RULE)]

    # 高危流失 applied by rule, with the weighted reasons as evidence
    assert yunfan_tags["高危流失"].source is Source.RULE
    churn_event = next(e for e in yunfan_events if e.tag == "高危流失")
    assert {r["signal"] for r in churn_event.evidence["reasons"]} == {"contract_end", "silence"}
    assert report.churn.at_risk == 1 and report.churn.tagged == 1

    sends = _sends(fake_wecom)
    assert all(b["enable_duplicate_check"] == 1 for b in sends)
    by_user = Counter(b["touser"] for b in sends)
    # digests: 小张, 王经理 (华东), 李总 (all regions) for 云帆; 小李 and 李总 for 海跃 -> 李总 gets ONE digest.
    # churn: 小张, 王经理, 李总 for 云帆. 赵经理 (西南) gets nothing.
    assert by_user == Counter({"小张": 2, "王经理": 2, "李总": 2, "小李": 1})
    li_digest = next(
        b for b in sends if b["touser"] == "李总" and "即将到期" in b["template_card"]["main_title"]["title"]
    )
    assert li_digest["template_card"]["main_title"]["title"].startswith("3 个标签即将到期")
    churn_card = next(b for b in sends if "高危流失" in b["template_card"]["main_title"]["title"])
    reasons = [row["value"] for row in churn_card["template_card"]["horizontal_content_list"]]
    assert any("未续费" in r for r in reasons) and any("没有对话" in r for r in reasons)
    assert report.outbox.sent == 7

    again = await run_once(jobs, NOW + timedelta(hours=1))  # a rerun (or a restart) sends nothing new
    assert again.warnings == 0 and again.churn.enqueued == 0 and again.outbox.sent == 0
    assert len(_sends(fake_wecom)) == 7


async def test_acknowledge_and_snooze_stop_repeats(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    seeded = await seed(database)
    jobs = _jobs(store, seeded["taxonomy"], {"wecom": wecom_deliverer})
    await score_churn(jobs, NOW)
    await drain_outbox(jobs, NOW)
    async with store.unit_of_work() as uow:
        claimed = await uow.outbox.counts()
    assert claimed == {"sent": 3}
    ids = {b["touser"]: int(b["template_card"]["task_id"].rsplit("-", 1)[1]) for b in _sends(fake_wecom)}
    with pytest.raises(NotAllowedError):
        await act_on_alert(store, ids["王经理"], "小张", "ack", NOW)
    acked = await act_on_alert(store, ids["王经理"], "王经理", "ack", NOW)
    assert acked.acknowledged_by == "王经理"
    snoozed = await act_on_alert(store, ids["李总"], "李总", "snooze", NOW)
    assert snoozed.snoozed_until == NOW + timedelta(days=7)

    later = NOW + timedelta(days=4)  # the next 7-day repeat period, same signals
    report = await score_churn(jobs, later)
    assert report.enqueued == 1  # only the owner: 王经理 acknowledged, 李总 snoozed for 7 days
    much_later = NOW + timedelta(days=11)  # a later period, snooze over; 王经理's acknowledgement still holds
    assert (await score_churn(jobs, much_later)).enqueued == 2


class CrashingAfterSend:
    """Wraps a deliverer: sends, then 'dies' before the outbox can mark the row (raises SystemExit)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.channel = inner.channel
        self.resend_is_safe = inner.resend_is_safe

    async def deliver(self, message: OutboxMessage) -> Delivery:
        await self.inner.deliver(message)
        raise SystemExit("process killed between sending and marking sent")


async def test_crash_between_send_and_mark_leaves_unknown_then_wecom_resends_under_duplicate_check(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    seeded = await seed(database)
    crashing = _jobs(store, seeded["taxonomy"], {"wecom": CrashingAfterSend(wecom_deliverer)})
    await warn_expiring(crashing, NOW)
    with pytest.raises(SystemExit):
        await drain_outbox(crashing, NOW)
    async with store.unit_of_work() as uow:
        assert (await uow.outbox.counts()).get("sending") == 1  # the claim was committed, the mark never ran
    first = _sends(fake_wecom)[-1]

    jobs = _jobs(store, seeded["taxonomy"], {"wecom": wecom_deliverer})
    soon = await drain_outbox(jobs, NOW + timedelta(minutes=2))  # lease not over: the row is left alone
    assert soon.requeued == 0
    report = await drain_outbox(jobs, NOW + timedelta(minutes=15))
    assert report.requeued == 1
    resent = [b for b in _sends(fake_wecom) if b["touser"] == first["touser"]]
    assert len(resent) == 2 and resent[0] == resent[1]  # byte-identical: WeCom's duplicate check drops it
    assert resent[1]["enable_duplicate_check"] == 1 and resent[1]["duplicate_check_interval"] == 4 * 3600
    async with store.unit_of_work() as uow:
        counts = await uow.outbox.counts()
    assert counts.get("unknown", 0) == 0 and counts.get("sending", 0) == 0


class NoDuplicateCheck:
    """A channel without a duplicate check (like Teams): records sends, crashes after the first."""

    channel = "msteams"
    resend_is_safe = False

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.crash = True

    async def deliver(self, message: OutboxMessage) -> Delivery:
        self.sent.append(message.id)
        if self.crash:
            raise SystemExit("killed")
        return Delivery(DeliveryOutcome.SENT, external_id="activity-1")


async def test_unknown_on_a_channel_without_duplicate_check_is_kept_not_resent(
    database: Database, store: AlertStore
) -> None:
    seeded = await seed(database)
    teams = NoDuplicateCheck()
    jobs = _jobs(store, seeded["taxonomy"], {"msteams": teams})
    await score_churn(jobs, NOW)
    with pytest.raises(SystemExit):
        await drain_outbox(jobs, NOW)
    teams.crash = False
    report = await drain_outbox(jobs, NOW + timedelta(hours=1))
    assert report.unknown == 1  # reported, not dropped and not sent twice
    assert teams.sent.count(teams.sent[0]) == 1
    async with store.unit_of_work() as uow:
        unknown = await uow.outbox.unknown(10)
    assert [m.id for m in unknown] == [teams.sent[0]]
    assert "outcome unknown" in (unknown[0].last_error or "")


async def test_retries_with_backoff_on_5xx_and_records_permanent_failures(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    seeded = await seed(database)
    jobs = _jobs(store, seeded["taxonomy"], {"wecom": wecom_deliverer})
    await score_churn(jobs, NOW)  # three alerts
    fake_wecom.http_error("message/send", 503, times=4)  # the client's four in-call attempts for the first row
    fake_wecom.fail("message/send", 81013, "invalid user")  # the second row: a permanent error
    report = await drain_outbox(jobs, NOW)
    assert (report.sent, report.retried, report.failed) == (1, 1, 1)
    async with store.unit_of_work() as uow:
        rows = [await uow.outbox.get(i) for i in (1, 2, 3)]
    states = Counter(r.state.value for r in rows if r)
    assert states == Counter({"pending": 1, "failed": 1, "sent": 1})
    failed = next(r for r in rows if r and r.state.value == "failed")
    assert "81013" in (failed.last_error or "")
    waiting = next(r for r in rows if r and r.state.value == "pending")
    assert waiting.next_attempt_at == NOW + timedelta(minutes=1) and "HTTP 503" in (waiting.last_error or "")
    assert (await drain_outbox(jobs, NOW + timedelta(seconds=30))).sent == 0  # backoff not over yet
    assert (await drain_outbox(jobs, NOW + timedelta(minutes=2))).sent == 1


async def test_a_token_that_goes_stale_again_after_the_refresh_is_retried_not_failed(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    """A replica's send whose fresh token was revoked before it was used keeps the alert for the next attempt."""
    seeded = await seed(database)
    jobs = _jobs(store, seeded["taxonomy"], {"wecom": wecom_deliverer})
    await score_churn(jobs, NOW)  # three alerts
    fake_wecom.fail("message/send", 40014, "invalid access_token", times=2)  # before and after the refresh
    report = await drain_outbox(jobs, NOW)
    assert (report.sent, report.retried, report.failed) == (2, 1, 0)
    assert (await drain_outbox(jobs, NOW + timedelta(minutes=2))).sent == 1


async def test_quiet_hours_hold_alerts_until_the_local_morning(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    seeded = await seed(database)
    jobs = _jobs(store, seeded["taxonomy"], {"wecom": wecom_deliverer})
    night = datetime(2025, 3, 10, 23, 0, tzinfo=SH)
    assert (await score_churn(jobs, night)).enqueued == 3
    assert (await drain_outbox(jobs, night + timedelta(hours=8))).sent == 0  # 07:00 local
    assert (await drain_outbox(jobs, datetime(2025, 3, 11, 8, 0, tzinfo=SH))).sent == 3


async def test_churn_tag_is_removed_when_the_score_falls_back_under_the_threshold(
    database: Database, store: AlertStore
) -> None:
    seeded = await seed(database)
    jobs = _jobs(store, seeded["taxonomy"], {})
    assert (await score_churn(jobs, NOW)).tagged == 1  # 杭州云帆科技: contract ending + 40 days of silence
    async with database.unit_of_work() as uow:  # a 高危流失 a manager set by hand on 深圳海跃贸易 (score 0)
        await uow.assignments.insert_active(seeded["haiyue"], "risk", "高危流失", Source.MANUAL, "李总", NOW, None)
    later = NOW + timedelta(days=1)
    await note_message(store, seeded["yunfan"], "wecom", later)  # 云帆 talks again: silence no longer fires

    report = await score_churn(jobs, later)

    assert (report.at_risk, report.untagged, report.enqueued) == (0, 1, 0)
    async with database.unit_of_work() as uow:
        yunfan_tags = {a.tag for a in await uow.assignments.active_for(seeded["yunfan"])}
        haiyue_tags = {a.tag for a in await uow.assignments.active_for(seeded["haiyue"])}
        removed, added = (await uow.events.for_customer(seeded["yunfan"], 0, 10))[:2]
    assert "高危流失" not in yunfan_tags
    assert "高危流失" in haiyue_tags  # a person's judgement is not undone by the rule
    assert (removed.kind, removed.tag, removed.source, removed.actor) == (
        EventKind.REMOVED,
        "高危流失",
        Source.RULE,
        "kebiao",
    )
    assert (added.kind, added.tag) == (EventKind.ADDED, "高危流失")
    assert removed.evidence["score"] == pytest.approx(0.4) and removed.evidence["threshold"] == pytest.approx(0.6)
    assert [r["signal"] for r in removed.evidence["reasons"]] == ["contract_end"]
    assert "低于阈值" in removed.evidence["note"]
    assert (await score_churn(jobs, later + timedelta(hours=1))).untagged == 0  # removed once, not every run


async def test_bulk_churn_tag_expires_by_the_tag_ttl_and_respects_the_hard_cap(
    database: Database, store: AlertStore
) -> None:
    seeded = await seed(database)
    capped = dataclasses.replace(_jobs(store, seeded["taxonomy"], {}), tagging=TaggingRules(hard_cap=2))
    report = await score_churn(capped, NOW)  # 杭州云帆科技 already holds two tags: at the cap
    assert (report.at_risk, report.tagged, report.enqueued) == (1, 0, 3)  # alerted, but not tagged
    report = await score_churn(_jobs(store, seeded["taxonomy"], {}), NOW)
    assert report.tagged == 1
    async with database.unit_of_work() as uow:
        churn = next(a for a in await uow.assignments.active_for(seeded["yunfan"]) if a.tag == "高危流失")
    assert (churn.dimension, churn.assigned_by, churn.expires_at) == ("risk", "kebiao", NOW + timedelta(days=30))


async def test_a_rule_suggestion_reaches_a_wecom_owner_with_accept_and_reject_buttons(
    fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    from core.alerts.ports import OutboxState
    from core.alerts.selection import AlertNotice, Reason, SuggestedTag

    notice = AlertNotice(
        rule="rule:咨询产品A",
        title="规则建议：上海明远科技",
        customer_id=7,
        customer_name="上海明远科技",
        reasons=(Reason("fact", 1.0, "提到 产品A"),),
        raised_at=NOW,
        alert_key="k",
        snooze_key="s",
        suggestions=(SuggestedTag(41, "产品A意向客户", "意向"),),
    )
    message = OutboxMessage(1, "d", "小张", "wecom", notice.to_payload(), OutboxState.PENDING, 0, None, None, NOW, NOW)
    delivered = await wecom_deliverer.deliver(message)
    assert delivered.outcome is DeliveryOutcome.SENT
    [sent] = _sends(fake_wecom)
    keys = [b["key"] for b in sent["template_card"]["button_list"]]
    assert keys == ["suggestion.accept:41", "suggestion.reject:41"]
    assert "上海明远科技" in sent["template_card"]["main_title"]["title"]
