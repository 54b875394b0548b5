"""What applying a tag reads and writes: a count of the customer's tags with the few rows that decide it, then the
assignment with its event, on both databases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

from core.records import CustomerDraft, NewEvent
from core.types import AssignmentState, EventKind, Source
from storage.database import Database
from storage.statements import count_statements
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


async def test_an_assignment_and_its_event_are_written_together_and_only_when_it_is_new(database: Database) -> None:
    later = datetime(2025, 3, 8, tzinfo=UTC)
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="温州瓯江阀门"), NOW)
        event = NewEvent(
            customer.id, "value", "VIP客户", EventKind.REPLACED, "u1", Source.KEYWORD, NOW,
            MappingProxyType({"message_key": "teams:m-1", "score": 0.9}), "普通客户",
        )
        with count_statements(database.engine) as count:
            added = await uow.assignments.insert_active(
                customer.id, "value", "VIP客户", Source.KEYWORD, "u1", NOW, later, event
            )
        # PostgreSQL: one statement (the event's INSERT reads the assignment's); SQLite: one each.
        assert count.statements == (1 if database.engine.dialect.name == "postgresql" else 2)
        assert added is not None and (added.tag, added.expires_at, added.source) == ("VIP客户", later, Source.KEYWORD)
        again = await uow.assignments.insert_active(
            customer.id, "value", "ＶＩＰ客户", Source.KEYWORD, "u2", NOW, None, replace(event, actor="u2")
        )
        assert again is None  # already active: neither row is written
        [logged] = await uow.events.for_customer(customer.id, 0, 10)
    stored = NewEvent(
        logged.customer_id, logged.dimension, logged.tag, logged.kind, logged.actor, logged.source, logged.at,
        logged.evidence, logged.previous,
    )
    assert stored == event
