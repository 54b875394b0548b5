"""Fixtures for alert tests: a seeded database, the fake WeCom API and a WeCom deliverer on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bots.wecom.alert_delivery import WeComAlertDeliverer
from bots.wecom.client import WeComClient
from core.alerts.ports import AlertStore
from core.records import CustomerDraft
from core.taxonomy.store import ensure_taxonomy
from core.types import Role, Source, User
from storage.database import Database
from storage.outbox import SqlAlertStore
from tagging.builtin import load_builtin
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi, fake_wecom

__all__ = ["fake_wecom"]

NOW = datetime(2025, 3, 10, 1, 0, tzinfo=UTC)  # 09:00 Asia/Shanghai, outside quiet hours


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def wecom_deliverer(fake_wecom: FakeWeComApi) -> AsyncIterator[WeComAlertDeliverer]:
    async with aiohttp.ClientSession() as session:
        client = WeComClient(session, CORP_ID, SECRET, AGENT_ID, fake_wecom.api_base, sleep=_no_sleep)
        yield WeComAlertDeliverer(client)


async def seed(database: Database, now: datetime = NOW) -> dict[str, Any]:
    """Two managers, two customers: 杭州云帆 at churn risk with two tags expiring soon, 深圳海跃 healthy."""
    taxonomy = load_builtin()
    async with database.unit_of_work() as uow:
        await ensure_taxonomy(uow, taxonomy, "test", now - timedelta(days=400))
        await uow.users.save(User("王经理", Role.MANAGER, ("华东",)), now)
        await uow.users.save(User("李总", Role.MANAGER, ()), now)
        await uow.users.save(User("赵经理", Role.MANAGER, ("西南",)), now)
        yunfan = await uow.customers.add(
            CustomerDraft("杭州云帆科技", owner="小张", region="华东", contract_end=date(2025, 3, 25)),
            now - timedelta(days=400),
        )
        haiyue = await uow.customers.add(
            CustomerDraft("深圳海跃贸易", owner="小李", region="华南"), now - timedelta(days=3)
        )
        assigned = now - timedelta(days=60)
        for tag, days in (("询价客户", 6.9), ("方案评估", 6.8)):
            await uow.assignments.insert_active(
                yunfan.id, "stage", tag, Source.MANUAL, "小张", assigned, now + timedelta(days=days)
            )
        await uow.assignments.insert_active(
            haiyue.id, "stage", "询价客户", Source.MANUAL, "小李", assigned, now + timedelta(days=6.9)
        )
        lapsed = await uow.assignments.insert_active(
            haiyue.id, "behavior", "今日已联系", Source.MANUAL, "小李", assigned, now - timedelta(hours=2)
        )
    return {"yunfan": yunfan.id, "haiyue": haiyue.id, "lapsed": lapsed.id if lapsed else 0, "taxonomy": taxonomy}


@pytest.fixture
async def store(database: Database) -> AlertStore:
    return SqlAlertStore(database.engine)
