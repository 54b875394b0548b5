"""What applying a tag reads of a customer's tags: a count of all and the few rows that decide it, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from core.records import CustomerDraft
from core.types import AssignmentState, Source
from storage.database import Database
from tagging.normaliser import name_key

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


async def test_holding_counts_every_active_tag_and_returns_only_the_deciding_rows(database: Database) -> None:
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="宁波海岳贸易"), NOW)
        other = await uow.customers.add(CustomerDraft(name="苏州东吴"), NOW)
        held = [("value", "VIP客户"), ("value", "普通客户"), ("stage", "询价客户"), ("risk", "高危流失")]
        for dimension, tag in held:
            await uow.assignments.insert_active(customer.id, dimension, tag, Source.MANUAL, "u1", NOW, None)
        await uow.assignments.insert_active(other.id, "value", "VIP客户", Source.MANUAL, "u1", NOW, None)
        gone = await uow.assignments.insert_active(customer.id, "stage", "成交客户", Source.MANUAL, "u1", NOW, None)
        assert gone is not None
        assert await uow.assignments.end(gone.id, AssignmentState.REMOVED, NOW)

        count, rows = await uow.assignments.holding(customer.id, "value", name_key("ＶＩＰ客户"), whole_dimension=False)
        assert count == 4  # ended rows and other customers' rows are not counted
        assert [(r.dimension, r.tag) for r in rows] == [("value", "VIP客户")]

        count, rows = await uow.assignments.holding(customer.id, "value", name_key("新客户"), whole_dimension=True)
        assert count == 4
        assert [(r.dimension, r.tag) for r in rows] == [("value", "VIP客户"), ("value", "普通客户")]

        count, rows = await uow.assignments.holding(customer.id, "stage", name_key("成交客户"), whole_dimension=False)
        assert (count, rows) == (4, [])  # the ended row does not decide anything

        count, rows = await uow.assignments.holding(other.id, "stage", name_key("询价客户"), whole_dimension=True)
        assert (count, rows) == (1, [])

        lone = await uow.customers.add(CustomerDraft(name="无标签客户"), NOW)
        assert await uow.assignments.holding(lone.id, "value", name_key("VIP客户"), whole_dimension=True) == (0, [])
