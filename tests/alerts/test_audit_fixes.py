"""Fixes from the alerts audit: channel choice, digests that never drop a tag, suggestion expiry, inbound
purge, quiet hours at drain time and bounded recovery of `unknown` rows. SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bots.wecom.alert_delivery import WeComAlertDeliverer
from config import AlertSettings, Settings, WeComSettings
from core.alerts.jobs import (
    AlertJobs,
    drain_outbox,
    expire_all,
    pick_channel,
    purge_inbound_claims,
    run_once,
    score_churn,
    warn_expiring,
)
from core.alerts.outbox import OutboxPolicy
from core.alerts.ports import AlertStore, Delivery, DeliveryOutcome, OutboxMessage, OutboxState
from core.alerts.selection import QuietHours
from core.types import Source, SuggestionStatus
from scheduler import configure_jobs
from storage.channels import SqlChannelStore
from storage.database import Database
from tests.alerts.conftest import NOW, seed
from tests.alerts.test_jobs import CrashingAfterSend
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi

SH = ZoneInfo("Asia/Shanghai")
WECOM_SETTINGS = WeComSettings(corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID)


class RecordingTeams:
    """The Teams deliverer as the server holds it (the outermost seam): records what it sends."""

    channel = "msteams"
    resend_is_safe = False

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def deliver(self, message: OutboxMessage) -> Delivery:
        self.sent.append(message.recipient)
        return Delivery(DeliveryOutcome.SENT, external_id=f"activity-{message.id}")


def _jobs(store: AlertStore, taxonomy: Any, deliverers: dict[str, Any], **kw: Any) -> AlertJobs:
    policy = OutboxPolicy(quiet=QuietHours.parse("22:00-08:00"), tz=SH, **kw)
    return AlertJobs(
        store=store,
        taxonomy=lambda: taxonomy,
        deliverers=deliverers,
        channels=("msteams", "wecom"),  # the deployment's channels, whichever deliverers this process holds
        outbox=policy,
        tz=SH,
    )


async def _rows(store: AlertStore, ids: range) -> list[OutboxMessage]:
    async with store.unit_of_work() as uow:
        return [m for m in [await uow.outbox.get(i) for i in ids] if m is not None]


# ---------------------------------------------------------------- S1: the channel is the recipient's


def test_channel_follows_the_recipient_not_the_deliverers_at_hand() -> None:
    assert pick_channel({"msteams"}, ["msteams", "wecom"]) == "msteams"
    assert pick_channel(set(), ["msteams", "wecom"]) == "wecom"
    assert pick_channel({"msteams"}, ["msteams"]) == "msteams"
    assert pick_channel(set(), ["msteams"]) == "msteams"


async def test_a_run_without_teams_queues_teams_users_for_teams_and_leaves_them_to_the_server(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    seeded = await seed(database)
    await SqlChannelStore(database.engine).save_reference(
        "msteams", "王经理", {"conversation": {"id": "a:personal-wang"}}, "tenant-1", NOW
    )
    settings = Settings(wecom=WECOM_SETTINGS)
    # What `kebiao alerts run-once` builds: WeCom only, since Teams needs the server's adapter.
    cli = configure_jobs(settings, store, lambda: seeded["taxonomy"], {"wecom": wecom_deliverer})
    assert cli.channels == ("msteams", "wecom")

    report = await run_once(cli, NOW)

    rows = await _rows(store, range(1, 20))
    wang = [r for r in rows if r.recipient == "王经理"]
    assert len(wang) == 2 and {(r.channel, r.state) for r in wang} == {("msteams", OutboxState.PENDING)}
    assert {r.channel for r in rows if r.recipient != "王经理"} == {"wecom"}
    assert report.outbox.sent == 5 and report.outbox.failed == 0
    assert report.outbox.elsewhere == {"msteams": 2}
    assert "left pending for a process that delivers them: 2 for msteams" in str(report)
    assert "王经理" not in {(c.body or {}).get("touser") for c in fake_wecom.calls_to("message/send")}

    teams = RecordingTeams()  # the server's next drain holds Teams and delivers them
    server = configure_jobs(settings, store, lambda: seeded["taxonomy"], {"wecom": wecom_deliverer, "msteams": teams})
    later = await drain_outbox(server, NOW + timedelta(minutes=1))
    assert (later.sent, later.elsewhere) == (2, {})
    assert teams.sent == ["王经理", "王经理"]


# ---------------------------------------------------------------- S2: digests never drop a tag


async def _digests(store: AlertStore) -> list[OutboxMessage]:
    return [r for r in await _rows(store, range(1, 200)) if r.payload.get("rule") == "expiry"]


async def test_a_tag_assigned_after_the_days_digest_is_warned_the_next_day_once(
    database: Database, store: AlertStore
) -> None:
    seeded = await seed(database)
    jobs = _jobs(store, seeded["taxonomy"], {})
    assert await warn_expiring(jobs, NOW) == 4  # 小张, 王经理, 李总, 小李
    async with database.unit_of_work() as uow:  # 6 h later: a 3-day tag, its warning window opens at once
        late = await uow.assignments.insert_active(
            seeded["haiyue"],
            "stage",
            "方案评估",
            Source.MANUAL,
            "小李",
            NOW + timedelta(hours=6),
            NOW + timedelta(days=3, hours=6),
        )
    assert late is not None
    assert await warn_expiring(jobs, NOW + timedelta(hours=7)) == 0  # today's digest already went out

    assert await warn_expiring(jobs, NOW + timedelta(days=1)) == 2  # 小李 and 李总 (all regions)
    assert await warn_expiring(jobs, NOW + timedelta(days=2)) == 0
    day2 = [d for d in await _digests(store) if d.dedupe_key.endswith("2025-03-11")]
    assert sorted(d.recipient for d in day2) == ["小李", "李总"]
    assert all(list(d.payload["assignment_ids"]) == [late.id] for d in day2)  # nothing warned twice
    assert all(d.payload["title"].startswith("1 个标签即将到期") for d in day2)


async def test_every_tag_is_warned_to_each_recipient_exactly_once_over_two_weeks(
    database: Database, store: AlertStore
) -> None:
    seeded = await seed(database)
    jobs = _jobs(store, seeded["taxonomy"], {})
    ttls = [1.5, 2.2, 3, 5, 8, 10]  # most shorter than the 7-day warning: their window opens on assignment
    added: list[tuple[int, datetime, datetime]] = []
    mornings = [NOW + timedelta(days=day) for day in range(14)]
    for day, morning in enumerate(mornings):
        await warn_expiring(jobs, morning)
        for hours, ttl in ((3, ttls[day % len(ttls)]), (20, ttls[(day + 3) % len(ttls)])):
            assigned = morning + timedelta(hours=hours)
            async with database.unit_of_work() as uow:
                row = await uow.assignments.insert_active(
                    seeded["yunfan"],
                    "behavior",
                    f"临时标签{day}-{hours}",
                    Source.MANUAL,
                    "小张",
                    assigned,
                    assigned + timedelta(days=ttl),
                )
            assert row is not None
            added.append((row.id, assigned, assigned + timedelta(days=ttl)))
            if hours == 3:
                await warn_expiring(jobs, morning + timedelta(hours=10))  # a second run the same day
    warned = Counter((d.recipient, int(i)) for d in await _digests(store) for i in d.payload.get("assignment_ids", ()))
    assert warned and max(warned.values()) == 1  # never twice
    for aid, assigned, expires in added:
        opens = max(expires - timedelta(days=7), assigned).astimezone(SH).date()
        if any(assigned < m < expires and opens <= m.astimezone(SH).date() for m in mornings):
            # a morning digest ran while the tag was live and in its warning window
            assert {r for r, i in warned if i == aid} == {"小张", "王经理", "李总"}, aid


# ---------------------------------------------------------------- suggestions expire


async def test_pending_suggestions_older_than_the_limit_expire_in_bulk(database: Database, store: AlertStore) -> None:
    seeded = await seed(database)
    async with database.unit_of_work() as uow:
        made = {}
        for key, age, status in (
            ("old", 15, SuggestionStatus.PENDING),
            ("older", 30, SuggestionStatus.PENDING),
            ("young", 13, SuggestionStatus.PENDING),
            ("rejected", 40, SuggestionStatus.REJECTED),
        ):
            row = await uow.suggestions.add_if_absent(
                seeded["yunfan"],
                f"wecom:{key}",
                "stage",
                "询价客户",
                0.9,
                {"excerpt": "请问报价多少"},
                NOW - timedelta(days=age),
                status,
                False,
                "小张" if status is SuggestionStatus.REJECTED else None,
            )
            assert row is not None
            made[key] = row.id
    jobs = configure_jobs(
        Settings(alerts=AlertSettings(suggestion_expiry_days=14)), store, lambda: seeded["taxonomy"], {}
    )

    report = await expire_all(jobs, NOW)

    assert (report.assignments, report.suggestions) == (1, 2)
    async with database.unit_of_work() as uow:
        after = {k: await uow.suggestions.get(i) for k, i in made.items()}
    assert {k: s.status for k, s in after.items() if s} == {
        "old": SuggestionStatus.EXPIRED,
        "older": SuggestionStatus.EXPIRED,
        "young": SuggestionStatus.PENDING,
        "rejected": SuggestionStatus.REJECTED,
    }
    old = after["old"]
    assert old is not None and (old.decided_by, old.decided_at) == ("kebiao", NOW)
    assert (await expire_all(jobs, NOW)).suggestions == 0


def test_suggestion_expiry_days_comes_from_the_environment() -> None:
    from config import ConfigError

    assert Settings.from_env({}, dotenv=None).alerts.suggestion_expiry_days == 14
    assert Settings.from_env({"KEBIAO_SUGGESTION_EXPIRY_DAYS": "30"}, dotenv=None).alerts.suggestion_expiry_days == 30
    with pytest.raises(ConfigError, match="suggestion_expiry_days"):
        Settings.from_env({"KEBIAO_SUGGESTION_EXPIRY_DAYS": "0"}, dotenv=None)


# ---------------------------------------------------------------- S5: inbound claims are purged


async def test_daily_maintenance_purges_old_inbound_claims(database: Database, store: AlertStore) -> None:
    seeded = await seed(database)
    channels = SqlChannelStore(database.engine)
    assert await channels.claim_inbound("wecom", "msgid-旧消息", NOW - timedelta(days=4))
    assert await channels.claim_inbound("teams", "activity-新消息", NOW - timedelta(hours=1))
    jobs = configure_jobs(Settings(), store, lambda: seeded["taxonomy"], {}, channels)

    assert await purge_inbound_claims(jobs, NOW) == 1

    assert await channels.claim_inbound("wecom", "msgid-旧消息", NOW)  # forgotten: claimable again
    assert not await channels.claim_inbound("teams", "activity-新消息", NOW)  # still de-duplicated
    assert (await run_once(jobs, NOW + timedelta(days=5))).purged == 2


# ---------------------------------------------------------------- N1: quiet hours at drain time


async def test_a_row_queued_just_before_quiet_hours_waits_until_they_end(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    seeded = await seed(database)
    jobs = _jobs(store, seeded["taxonomy"], {"wecom": wecom_deliverer})
    assert (await score_churn(jobs, datetime(2025, 3, 10, 21, 59, tzinfo=SH))).enqueued == 3

    night = await drain_outbox(jobs, datetime(2025, 3, 10, 22, 0, 30, tzinfo=SH))

    assert night.sent == 0 and night.quiet_until == datetime(2025, 3, 11, 8, 0, tzinfo=SH)
    assert "quiet hours: held until" in str(night)
    assert fake_wecom.calls_to("message/send") == []
    assert (await drain_outbox(jobs, datetime(2025, 3, 11, 8, 0, tzinfo=SH))).sent == 3


async def test_an_unknown_row_found_in_quiet_hours_is_resent_at_their_end_only_inside_the_window(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    seeded = await seed(database)
    evening = datetime(2025, 3, 10, 21, 0, tzinfo=SH)
    await score_churn(_jobs(store, seeded["taxonomy"], {}), evening)
    crashing = _jobs(store, seeded["taxonomy"], {"wecom": CrashingAfterSend(wecom_deliverer)})
    with pytest.raises(SystemExit):
        await drain_outbox(crashing, evening)  # claimed 21:00, sent, died
    jobs = _jobs(store, seeded["taxonomy"], {"wecom": wecom_deliverer})

    report = await drain_outbox(jobs, datetime(2025, 3, 10, 22, 30, tzinfo=SH))

    # 08:00 is 11 h after the uncertain send, far outside WeCom's 4 h duplicate check: not resent
    assert (report.requeued, report.unknown, report.sent) == (0, 1, 0)
    assert len(fake_wecom.calls_to("message/send")) == 1


# ---------------------------------------------------------------- N3: bounded recovery of unknown rows


async def _crash_once(store: AlertStore, taxonomy: Any, deliverer: WeComAlertDeliverer, at: datetime) -> None:
    with pytest.raises(SystemExit):
        await drain_outbox(_jobs(store, taxonomy, {"wecom": CrashingAfterSend(deliverer)}), at)


async def test_the_resend_window_runs_from_the_first_uncertain_send_not_the_latest_claim(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    seeded = await seed(database)
    taxonomy = seeded["taxonomy"]
    jobs = _jobs(store, taxonomy, {"wecom": wecom_deliverer})
    await score_churn(_jobs(store, taxonomy, {}), NOW)
    await _crash_once(store, taxonomy, wecom_deliverer, NOW)  # first uncertain send at NOW
    # 3 h later: still inside the 3.5 h window, re-queued, claimed and crashes again
    await _crash_once(store, taxonomy, wecom_deliverer, NOW + timedelta(hours=3))
    first = (await _rows(store, range(1, 2)))[0]
    assert first.unsure_since == NOW and first.attempts == 2

    report = await drain_outbox(jobs, NOW + timedelta(hours=3, minutes=40))

    assert report.requeued == 0 and report.unknown == 1  # 3 h 40 min after the first send: too late to resend
    row = (await _rows(store, range(1, 2)))[0]
    assert row.state is OutboxState.UNKNOWN and row.unsure_since == NOW


async def test_re_queues_of_an_unknown_row_are_capped_by_max_attempts(
    database: Database, store: AlertStore, fake_wecom: FakeWeComApi, wecom_deliverer: WeComAlertDeliverer
) -> None:
    seeded = await seed(database)
    taxonomy = seeded["taxonomy"]
    await score_churn(_jobs(store, taxonomy, {}), NOW)
    capped = _jobs(store, taxonomy, {"wecom": wecom_deliverer}, max_attempts=2)
    with pytest.raises(SystemExit):
        await drain_outbox(_jobs(store, taxonomy, {"wecom": CrashingAfterSend(wecom_deliverer)}, max_attempts=2), NOW)
    with pytest.raises(SystemExit):
        await drain_outbox(
            _jobs(store, taxonomy, {"wecom": CrashingAfterSend(wecom_deliverer)}, max_attempts=2),
            NOW + timedelta(minutes=15),
        )

    report = await drain_outbox(capped, NOW + timedelta(minutes=30))

    row = (await _rows(store, range(1, 2)))[0]
    assert row.state is OutboxState.FAILED and report.failed == 1 and report.requeued == 0
    assert "outcome unknown after 2 attempts" in (row.last_error or "")
    assert row.payload["rule"] == "churn"
    sends_to_first = [c for c in fake_wecom.calls_to("message/send") if (c.body or {}).get("touser") == row.recipient]
    assert len(sends_to_first) == 2
