"""Alert delivery into Teams through TeamsAlertDeliverer, the real CloudAdapter and the fake Bot Connector."""

from __future__ import annotations

import json
from typing import Any

from botbuilder.schema import Activity

from bots.teams.alert_delivery import TeamsAlertDeliverer
from bots.teams.notifier import TEAMS_CHANNEL
from bots.teams.references import StoredReference
from core.alerts.jobs import AlertJobs, drain_outbox, score_churn
from core.alerts.ports import AlertStore, OutboxState
from storage.channels import SqlChannelStore
from storage.database import Database
from tests.alerts.conftest import NOW, seed
from tests.teams.conftest import (
    FakeTime,
    close_open_adapters,
    connector,
    load_payload,
    local_notifier,
    openid,
    signing_key,
)
from tests.teams.fake_connector import FakeConnector
from tests.teams.tokens import OpenIdServer

__all__ = ["close_open_adapters", "connector", "openid", "signing_key"]

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RECIPIENTS = ("小张", "王经理", "李总")  # who the seeded churn alert for 杭州云帆科技 goes to


async def _deliverer(database: Database, openid: OpenIdServer, url: str, wait: FakeTime) -> TeamsAlertDeliverer:
    """The deliverer as app.py builds it, with every recipient's 1:1 reference stored as the bot stores it."""
    notifier = local_notifier(openid, wait)
    channels = SqlChannelStore(database.engine)
    for n, user in enumerate(RECIPIENTS):
        stored = StoredReference.from_activity(Activity().deserialize(load_payload("personal_message", url)))
        reference = json.loads(stored.reference_json)
        reference["serviceUrl"] = stored.service_url
        reference["conversation"]["id"] = f"a:personal-{n}"
        await channels.save_reference(TEAMS_CHANNEL, user, reference, stored.tenant_id, NOW)
    return TeamsAlertDeliverer(notifier, channels)


def _jobs(store: AlertStore, taxonomy: Any, deliverer: TeamsAlertDeliverer) -> AlertJobs:
    return AlertJobs(store=store, taxonomy=lambda: taxonomy, deliverers={TEAMS_CHANNEL: deliverer})


async def test_alert_card_reaches_each_stored_conversation_with_the_tenant(
    database: Database, store: AlertStore, connector: tuple[FakeConnector, str], openid: OpenIdServer
) -> None:
    fake, url = connector
    seeded = await seed(database)
    jobs = _jobs(store, seeded["taxonomy"], await _deliverer(database, openid, url, FakeTime()))
    assert (await score_churn(jobs, NOW)).enqueued == 3

    report = await drain_outbox(jobs, NOW)

    assert report.sent == 3
    assert sorted(c.conversation_id for c in fake.delivered) == ["a:personal-0", "a:personal-1", "a:personal-2"]
    for call in fake.delivered:
        assert call.body["channelData"]["tenant"]["id"] == TENANT
        assert call.body["conversation"]["tenantID"] == TENANT
        card = call.body["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert "高危流失预警" in json.dumps(card["content"], ensure_ascii=False)
        assert "杭州云帆科技" in json.dumps(card["content"], ensure_ascii=False)
    async with store.unit_of_work() as uow:
        rows = [await uow.outbox.get(i) for i in (1, 2, 3)]
    assert [(r.state, r.channel, r.attempts) for r in rows if r] == [(OutboxState.SENT, TEAMS_CHANNEL, 1)] * 3
    assert all("platform id 1:" in (r.last_error or "") for r in rows if r)


async def test_403_fails_the_row_with_its_reason_and_429_then_success_is_delivered_once(
    database: Database, store: AlertStore, connector: tuple[FakeConnector, str], openid: OpenIdServer
) -> None:
    fake, url = connector
    seeded = await seed(database)
    wait = FakeTime()
    jobs = _jobs(store, seeded["taxonomy"], await _deliverer(database, openid, url, wait))
    await score_churn(jobs, NOW)
    fake.fail(403)  # the first row: the user blocked the bot
    fake.fail(429, retry_after="2")  # the second row: throttled once, then accepted

    report = await drain_outbox(jobs, NOW)

    assert (report.sent, report.failed, report.retried) == (2, 1, 0)
    async with store.unit_of_work() as uow:
        first, second, third = [await uow.outbox.get(i) for i in (1, 2, 3)]
    assert first is not None and first.state is OutboxState.FAILED
    assert "forbidden: HTTP 403" in (first.last_error or "")
    assert "ConversationBlockedByUser" in (first.last_error or "")
    assert second is not None and second.state is OutboxState.SENT and second.attempts == 1
    assert third is not None and third.state is OutboxState.SENT
    a, b, c = (f"a:personal-{RECIPIENTS.index(r.recipient)}" for r in (first, second, third))
    assert [call.conversation_id for call in fake.calls] == [a, b, b, c]
    assert [call.conversation_id for call in fake.delivered] == [b, c]  # each delivered once
    assert 2.0 in wait.sleeps  # Retry-After honoured before the second try

    again = await drain_outbox(jobs, NOW.replace(hour=5))  # nothing left: no resend of the sent or failed rows
    assert (again.sent, again.failed) == (0, 0) and len(fake.calls) == 4
