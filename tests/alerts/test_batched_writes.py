"""Outbox rows and tag events written in one statement per batch (arrays on PostgreSQL, rows on SQLite)
are stored exactly as one-by-one writes store them."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from core.alerts.ports import AlertStore, NewOutboxMessage
from core.records import CustomerDraft, NewEvent
from core.types import EventKind, Source
from storage import tables as t
from storage.database import Database
from tests.alerts.conftest import NOW

PAYLOAD = {
    "rule": "churn",
    "title": "高危流失预警",
    "reasons": [{"text": "合同3天后到期", "weight": 0.4}],
    "score": None,
}


def _message(key: str, not_before: datetime | None = None) -> NewOutboxMessage:
    return NewOutboxMessage(f"churn|{key}", f"user-{key}", "wecom", {**PAYLOAD, "key": key}, not_before)


async def _outbox(database: Database) -> list[tuple[object, ...]]:
    o = t.outbox.c
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            select(o.dedupe_key, o.recipient, o.channel, o.payload, o.state, o.attempts, o.next_attempt_at)
            .add_columns(o.created_at, o.updated_at)
            .order_by(o.id)
        )
        return [tuple(r) for r in rows]


async def test_enqueue_many_stores_what_enqueue_stores(database: Database, store: AlertStore) -> None:
    later = NOW + timedelta(hours=9)
    async with store.unit_of_work() as uow:
        assert await uow.outbox.enqueue_many([], NOW) == 0
        assert await uow.outbox.enqueue(_message("a", later), NOW)
        assert await uow.outbox.enqueue(_message("b"), NOW)
    one_by_one = await _outbox(database)
    async with database.engine.begin() as conn:
        await conn.execute(t.outbox.delete())
    async with store.unit_of_work() as uow:
        assert await uow.outbox.enqueue_many([_message("a", later)], NOW) == 1
        # An existing key and a key repeated within the batch are each inserted once.
        assert await uow.outbox.enqueue_many([_message("a"), _message("b"), _message("b", later)], NOW) == 1
    assert await _outbox(database) == one_by_one
    assert one_by_one[0][3] == {**PAYLOAD, "key": "a"} and one_by_one[0][6] == later


async def test_enqueue_many_refuses_a_naive_time(store: AlertStore) -> None:
    with pytest.raises((ValueError, StatementError), match="naive"):  # SQLAlchemy wraps it on SQLite
        async with store.unit_of_work() as uow:
            await uow.outbox.enqueue_many([_message("a", datetime(2025, 3, 10, 9))], NOW)
    async with store.unit_of_work() as uow:
        assert await uow.outbox.counts() == {}


async def test_append_events_stores_each_event_in_order(database: Database, store: AlertStore) -> None:
    async with database.unit_of_work() as uow:
        ids = [(await uow.customers.add(CustomerDraft(f"客户{i}"), NOW)).id for i in range(3)]
    events = [
        NewEvent(ids[2], "risk", "高危流失", EventKind.ADDED, "kebiao", Source.RULE, NOW, {"note": "甲", "score": 0.6}),
        NewEvent(ids[0], "stage", "询价客户", EventKind.EXPIRED, "kebiao", Source.RULE, NOW - timedelta(days=1)),
        NewEvent(ids[1], "risk", "高危流失", EventKind.REMOVED, "kebiao", Source.RULE, NOW, {"reasons": []}, "x"),
    ]
    async with store.unit_of_work() as uow:
        await uow.scans.append_events([])
        await uow.scans.append_events(events[:1])
        await uow.scans.append_events(events[1:])
    e = t.tag_events.c
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            select(e.customer_id, e.dimension, e.tag, e.kind, e.actor, e.source, e.at, e.evidence, e.previous).order_by(
                e.id
            )
        )
        stored = [tuple(r) for r in rows]
    assert stored == [
        (x.customer_id, x.dimension, x.tag, x.kind.value, x.actor, x.source.value, x.at, dict(x.evidence), x.previous)
        for x in events
    ]
