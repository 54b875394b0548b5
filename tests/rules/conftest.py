"""Rules fixtures: a RuleContext over the test database and a small seeded customer base."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from core.records import CustomerDraft
from core.rules.service import RuleContext
from core.taxonomy.store import ensure_taxonomy, import_taxonomy
from core.types import Role, User
from storage.database import Database
from storage.rules import SqlRulesStore
from tagging.builtin import load_builtin
from tagging.taxonomy import Taxonomy

NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)  # 10:00 Asia/Shanghai, outside quiet hours


class Cell:
    """The taxonomy in force, as the server's cell holds it (with its stored version number)."""

    def __init__(self) -> None:
        self.taxonomy: Taxonomy = load_builtin()

    def __call__(self) -> Taxonomy:
        return self.taxonomy


async def use_taxonomy(database: Database, cell: Cell, taxonomy: Taxonomy, now: datetime = NOW) -> None:
    async with database.unit_of_work() as uow:
        change = await import_taxonomy(uow, taxonomy, "test", now)
    cell.taxonomy = change.version.taxonomy


async def seed(database: Database, now: datetime = NOW) -> dict[str, Any]:
    """A manager for 华东, 甲公司 (contract ends in 10 days), 乙公司 (healthy), 张三 (a contact of 甲公司)."""
    async with database.unit_of_work() as uow:
        await ensure_taxonomy(uow, load_builtin(), "test", now - timedelta(days=400))
        await uow.users.save(User("王经理", Role.MANAGER, ("华东",)), now)
        await uow.users.save(User("赵经理", Role.MANAGER, ("西南",)), now)
        jia = await uow.customers.add(
            CustomerDraft(
                "甲公司",
                owner="小张",
                region="华东",
                crm_id="CRM-1",
                contract_end=date(2026, 12, 16),
                attributes={"birthday": "1980-01-05", "累计消费": "6000"},
            ),
            now - timedelta(days=10),
        )
        yi = await uow.customers.add(
            CustomerDraft(
                "乙公司",
                owner="小李",
                region="华南",
                crm_id="CRM-2",
                contract_end=date(2027, 6, 1),
                attributes={"birthday": "1990-05-05", "累计消费": "100"},
            ),
            now - timedelta(days=30),
        )
        zhang = await uow.customers.add(
            CustomerDraft("张三", owner="小张", region="华东", crm_id="CRM-3", attributes={"parent": "甲公司"}),
            now - timedelta(days=30),
        )
    return {"jia": jia.id, "yi": yi.id, "zhang": zhang.id}


def context(database: Database, cell: Cell, **kw: Any) -> RuleContext:
    base = RuleContext(store=SqlRulesStore(database.engine), taxonomy=cell, channels=("msteams",))
    return replace(base, **kw)


@pytest.fixture
def cell() -> Cell:
    return Cell()
