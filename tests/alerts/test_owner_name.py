"""A churn alert says whose customer it is by display name from its first delivery, not only after an action."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cards.alert import build_alert_card
from cards.present import alert_view_from_payload
from core.alerts.jobs import score_churn
from core.alerts.ports import AlertStore
from core.types import Role, User
from storage.database import Database
from tests.alerts.conftest import NOW, seed
from tests.alerts.test_jobs import _jobs
from tests.teams.test_bot_flow import texts


async def _churn_cards(store: AlertStore) -> dict[str, Any]:
    """The Teams card each queued churn alert is delivered as, by recipient."""
    async with store.unit_of_work() as uow:
        rows = await uow.outbox.claim(NOW + timedelta(days=1), 50)
    return {
        m.recipient: build_alert_card(alert_view_from_payload(m), NOW) for m in rows if m.payload["rule"] == "churn"
    }


async def test_a_new_churn_alert_names_the_owner_by_display_name(database: Database, store: AlertStore) -> None:
    seeded = await seed(database)
    async with database.unit_of_work() as uow:
        await uow.users.save(User("小张", Role.AGENT, display_name="张小明"), NOW)
    await score_churn(_jobs(store, seeded["taxonomy"], {}), NOW)
    cards = await _churn_cards(store)
    assert sorted(cards) == ["小张", "李总", "王经理"]
    for card in cards.values():
        assert "负责人：张小明" in texts(card)


async def test_an_owner_without_a_stored_name_shows_as_the_id(database: Database, store: AlertStore) -> None:
    seeded = await seed(database)
    await score_churn(_jobs(store, seeded["taxonomy"], {}), NOW)
    cards = await _churn_cards(store)
    assert cards and all("负责人：小张" in texts(card) for card in cards.values())
