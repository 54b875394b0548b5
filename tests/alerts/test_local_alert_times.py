"""Alert cards show when the alert was raised in KEBIAO_TIMEZONE (the deliverer gets the zone from app.py)."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from bots.teams.alert_delivery import TeamsAlertDeliverer
from core.alerts.jobs import drain_outbox, score_churn
from core.alerts.ports import AlertStore
from storage.database import Database
from tests.alerts.conftest import NOW, seed
from tests.alerts.test_teams_delivery import _deliverer, _jobs
from tests.teams.conftest import FakeTime, close_open_adapters, connector, openid, signing_key
from tests.teams.fake_connector import FakeConnector
from tests.teams.tokens import OpenIdServer

__all__ = ["close_open_adapters", "connector", "openid", "signing_key"]


async def test_the_alert_card_shows_the_raised_time_in_the_configured_zone(
    database: Database, store: AlertStore, connector: tuple[FakeConnector, str], openid: OpenIdServer
) -> None:
    fake, url = connector
    seeded = await seed(database)
    plain = await _deliverer(database, openid, url, FakeTime())
    zone = ZoneInfo("Asia/Shanghai")
    local = TeamsAlertDeliverer(plain._notifier, plain._references, tz=zone)
    jobs = _jobs(store, seeded["taxonomy"], local)
    assert (await score_churn(jobs, NOW)).enqueued == 3
    assert (await drain_outbox(jobs, NOW)).sent == 3
    shown = f"{NOW.astimezone(zone):%Y-%m-%d %H:%M}"
    assert shown != f"{NOW:%Y-%m-%d %H:%M}"
    for call in fake.delivered:
        card = json.dumps(call.body["attachments"][0]["content"], ensure_ascii=False)
        assert f"提醒时间 {shown}" in card, card
