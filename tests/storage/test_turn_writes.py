"""A linked message's one write (`SqlTurnUnitOfWork.write_message`) on SQLite and PostgreSQL.

Its suggestions, its text kept for learning and its `message` event are stored together or not at all, each
unless its key exists; on PostgreSQL it is one statement, and a `one_write` unit of work opens no transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.learning.ports import MessageText
from core.ports import NewApplied, NewAssignment
from core.records import CustomerDraft, NewEvent, NewSuggestion
from core.rules.ingest import own_event
from core.rules.ports import NewCustomerEvent
from core.types import AssignmentState, EventKind, Source, SuggestionStatus
from storage import tables as t
from storage.database import Database
from storage.statements import count_statements
from storage.turns import SqlTurnStore

NOW = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
KEY = "msteams:a:私聊:activity-1"


async def _customer(database: Database) -> int:
    async with database.unit_of_work() as uow:
        return (await uow.customers.add(CustomerDraft(name="上海明远科技"), NOW)).id


def _row(customer_id: int, tag: str, score: float, dimension: str = "intent") -> NewSuggestion:
    evidence = {"matched": ["报价", "价格"], "excerpt": "麻烦发一下[报价单](http://x) <at>王丽</at>"}
    return NewSuggestion(customer_id, KEY, dimension, tag, score, evidence, NOW, SuggestionStatus.PENDING, False, None)


def _text(customer_id: int) -> MessageText:
    return MessageText(KEY, "teams", "a:私聊", customer_id, "麻烦发一下报价单", NOW)


def _event(customer_id: int) -> NewCustomerEvent:
    return own_event(f"message:{KEY}", customer_id, "message", NOW, {"channel": "teams"})


Stored = tuple[list[tuple[str, str, float, dict[str, object], str]], list[str], list[object]]


async def _stored(database: Database) -> Stored:
    """(suggestions as (dimension, tag, score, evidence, status), kept texts, message-event properties)."""
    s, m, e = t.suggestions.c, t.learning_messages.c, t.customer_events.c
    async with database.engine.connect() as conn:
        suggestions = [
            (r.dimension, r.tag, r.score, r.evidence, r.status)
            for r in await conn.execute(select(t.suggestions).order_by(s.id))
        ]
        texts = list((await conn.scalars(select(m.text).order_by(m.id))).all())
        events = list((await conn.scalars(select(e.properties).where(e.kind == "message"))).all())
    return suggestions, texts, events


async def test_a_message_write_stores_all_three_once_and_a_retry_adds_nothing(database: Database) -> None:
    customer_id = await _customer(database)
    store = SqlTurnStore(database.engine)
    rows = [_row(customer_id, "询价客户", 0.8), _row(customer_id, "VIP客户", 0.6, "value")]
    async with store.unit_of_work(one_write=True) as uow:
        first = await uow.write_message(KEY, rows, _text(customer_id), _event(customer_id), NOW)
    assert [(r.dimension, r.tag, r.score, r.status) for r in first.added] == [
        ("intent", "询价客户", 0.8, SuggestionStatus.PENDING),
        ("value", "VIP客户", 0.6, SuggestionStatus.PENDING),
    ]
    assert first.added[0].id < first.added[1].id and first.added[0].evidence == rows[0].evidence
    assert first.added[0].created_at == NOW and first.added[0].customer_id == customer_id
    assert (first.new_event, first.seen) == (True, False)

    async with store.unit_of_work(one_write=True) as uow:
        again = await uow.write_message(KEY, rows, _text(customer_id), _event(customer_id), NOW)
    assert (again.added, again.new_event, again.seen) == ((), False, True)
    async with store.unit_of_work(one_write=True) as uow:  # the message no longer matches: still seen before
        unmatched = await uow.write_message(KEY, [], _text(customer_id), _event(customer_id), NOW)
    assert (unmatched.added, unmatched.new_event, unmatched.seen) == ((), False, True)

    suggestions, texts, events = await _stored(database)
    assert suggestions == [
        ("intent", "询价客户", 0.8, dict(rows[0].evidence), "pending"),
        ("value", "VIP客户", 0.6, dict(rows[1].evidence), "pending"),
    ]
    assert texts == ["麻烦发一下报价单"] and events == [{"channel": "teams"}]


async def test_a_message_without_suggestions_or_event_writes_its_text_only(database: Database) -> None:
    customer_id = await _customer(database)
    async with SqlTurnStore(database.engine).unit_of_work(one_write=True) as uow:
        wrote = await uow.write_message(KEY, [], _text(customer_id), None, NOW)
    assert (wrote.added, wrote.new_event, wrote.seen) == ((), False, False)
    assert await _stored(database) == ([], ["麻烦发一下报价单"], [])


async def test_a_tag_suggested_twice_in_one_message_is_stored_once_the_first_winning(database: Database) -> None:
    customer_id = await _customer(database)
    rows = [_row(customer_id, "询价客户", 0.8), _row(customer_id, "企业客户", 0.5)]
    rows.append(_row(customer_id, " 询价客户 ", 0.3))
    async with SqlTurnStore(database.engine).unit_of_work(one_write=True) as uow:
        wrote = await uow.write_message(KEY, rows, None, None, NOW)
    assert [(r.tag, r.score) for r in wrote.added] == [("询价客户", 0.8), ("企业客户", 0.5)]


async def test_a_message_write_that_fails_in_its_last_part_leaves_nothing(database: Database) -> None:
    """The event names a customer that does not exist: the suggestions and the text go with it."""
    customer_id = await _customer(database)
    with pytest.raises(IntegrityError):
        async with SqlTurnStore(database.engine).unit_of_work(one_write=True) as uow:
            await uow.write_message(
                KEY, [_row(customer_id, "询价客户", 0.8)], _text(customer_id), _event(customer_id + 1000), NOW
            )
    assert await _stored(database) == ([], [], [])
    async with database.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(t.customer_events)) == 0


async def test_a_one_write_unit_of_work_is_one_statement_without_a_transaction_on_postgres(
    database: Database, postgres_transactions: list[str]
) -> None:
    """On PostgreSQL the customer read and the write commit on their own: no BEGIN and COMMIT round trips, and
    the three inserts are one statement. On SQLite the read commits on its own too, and the write is one
    transaction sent in one trip: BEGIN IMMEDIATE, the three inserts and the look for suggestions stored before."""
    customer_id = await _customer(database)
    before = len(postgres_transactions)
    store = SqlTurnStore(database.engine)
    with count_statements(database.engine) as count:
        async with store.unit_of_work(one_write=True) as uow:
            assert await uow.customers.get(customer_id) is not None
            rows = [_row(customer_id, "询价客户", 0.8)]
            await uow.write_message(KEY, rows, _text(customer_id), _event(customer_id), NOW)
    statements, writes, reads = count.per(1)
    postgres = database.engine.dialect.name == "postgresql"
    # PostgreSQL: the read and the write. SQLite: the read, then BEGIN IMMEDIATE, three inserts and the look.
    assert (len(postgres_transactions) - before, statements) == ((0, 2) if postgres else (0, 6))
    assert (writes, reads) == (1, 0)
    async with store.unit_of_work() as uow:  # without one_write: a transaction as usual
        await uow.customers.get(customer_id)
    assert len(postgres_transactions) - before == (1 if postgres else 0)


async def test_keeping_a_message_in_a_transaction_commits_or_rolls_back_with_it(database: Database) -> None:
    """A message that applies a tag keeps its text and event in its transaction (one statement on PostgreSQL)."""
    customer_id = await _customer(database)
    store = SqlTurnStore(database.engine)
    with pytest.raises(RuntimeError):
        async with store.unit_of_work() as uow:
            assert await uow.keep_message(KEY, _text(customer_id), _event(customer_id), NOW)
            raise RuntimeError("the turn failed after its writes")
    assert await _stored(database) == ([], [], [])
    with count_statements(database.engine) as count:
        async with store.unit_of_work() as uow:
            assert await uow.keep_message(KEY, _text(customer_id), _event(customer_id), NOW)
    statements, _writes, _reads = count.per(1)
    # PostgreSQL: one statement (BEGIN and COMMIT are the driver's own); SQLite: BEGIN IMMEDIATE and two inserts.
    assert statements == (1 if database.engine.dialect.name == "postgresql" else 3)
    async with store.unit_of_work() as uow:
        assert not await uow.keep_message(KEY, _text(customer_id), _event(customer_id), NOW)
    assert await _stored(database) == ([], ["麻烦发一下报价单"], [{"channel": "teams"}])


async def test_keeping_a_message_without_a_transaction_is_still_all_or_nothing(database: Database) -> None:
    """In a one-write unit of work (no transaction around it) the text and the event are one write of their own."""
    customer_id = await _customer(database)
    store = SqlTurnStore(database.engine)
    with pytest.raises(IntegrityError):
        async with store.unit_of_work(one_write=True) as uow:
            await uow.keep_message(KEY, _text(customer_id), _event(customer_id + 1000), NOW)
    assert await _stored(database) == ([], [], [])
    async with store.unit_of_work(one_write=True) as uow:
        assert await uow.keep_message(KEY, _text(customer_id), _event(customer_id), NOW)
    assert await _stored(database) == ([], ["麻烦发一下报价单"], [{"channel": "teams"}])


# ---------------------------------------------------------------- a tag applied with the message (PostgreSQL)

def _auto(customer_id: int, tag: str = "询价客户") -> NewSuggestion:
    evidence = {"matched": ["报价"], "excerpt": "麻烦发一下报价单"}
    return NewSuggestion(customer_id, KEY, "intent", tag, 0.9, evidence, NOW, SuggestionStatus.ACCEPTED, True, "kebiao")


def _applied(customer_id: int, tag: str = "询价客户") -> NewApplied:
    assignment = NewAssignment(customer_id, "intent", tag, Source.KEYWORD, "kebiao", NOW, NOW + timedelta(days=30))
    evidence = {"matched": ["报价"], "message_key": KEY, "score": 0.9}
    event = NewEvent(customer_id, "intent", tag, EventKind.ADDED, "kebiao", Source.KEYWORD, NOW, evidence)
    return NewApplied(assignment, event)


async def _tags(database: Database) -> tuple[list[tuple[int, str, str, str, object]], list[tuple[str, str, object]]]:
    """(assignments as (id, tag, state, assigned_by, expires_at), events as (kind, tag, evidence))."""
    a, e = t.tag_assignments.c, t.tag_events.c
    async with database.engine.connect() as conn:
        held = [
            (r.id, r.tag, r.state, r.assigned_by, r.expires_at)
            for r in await conn.execute(select(t.tag_assignments).order_by(a.id))
        ]
        logged = [(r.kind, r.tag, r.evidence) for r in await conn.execute(select(t.tag_events).order_by(e.id))]
    return held, logged


@pytest.fixture
def only_postgres(database: Database) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("a tag is applied with the message's write on PostgreSQL only")


async def test_a_tag_applied_with_the_message_is_stored_once_with_its_event(
    database: Database, only_postgres: None
) -> None:
    customer_id = await _customer(database)
    store = SqlTurnStore(database.engine)
    assert store.applies_at_once
    rows = [_auto(customer_id), _row(customer_id, "VIP客户", 0.6, "value")]
    with count_statements(database.engine) as count:
        async with store.unit_of_work(one_write=True) as uow:
            wrote = await uow.write_message(KEY, rows, _text(customer_id), _event(customer_id), NOW,
                                            _applied(customer_id))
    assert count.per(1)[0] == 1  # everything in one statement, in no transaction
    assert [(r.tag, r.auto_applied) for r in wrote.added] == [("询价客户", True), ("VIP客户", False)]
    held, logged = await _tags(database)
    assert held == [(wrote.applied_id, "询价客户", "active", "kebiao", NOW + timedelta(days=30))]
    assert logged == [("added", "询价客户", {"matched": ["报价"], "message_key": KEY, "score": 0.9})]

    async with database.unit_of_work() as uow:  # someone removes it before the message arrives again
        assert wrote.applied_id is not None
        assert await uow.assignments.end(wrote.applied_id, AssignmentState.REMOVED, NOW)
    async with store.unit_of_work(one_write=True) as uow:  # the retry: its suggestion is not new, nothing applied
        again = await uow.write_message(KEY, rows, _text(customer_id), _event(customer_id), NOW,
                                        _applied(customer_id))
    assert (again.added, again.seen, again.applied_id) == ((), True, None)
    assert await _tags(database) == ([(wrote.applied_id, "询价客户", "removed", "kebiao", held[0][4])], logged)


async def test_a_tag_already_held_is_not_applied_again_nor_logged(database: Database, only_postgres: None) -> None:
    """Another request added the tag between the turn's read and its write: the suggestion is stored, the
    active row stays the one there, and no second `added` event is logged."""
    customer_id = await _customer(database)
    store = SqlTurnStore(database.engine)
    async with database.unit_of_work() as uow:
        there = await uow.assignments.insert_active(customer_id, "intent", "询价客户", Source.MANUAL, "王丽", NOW, None)
    assert there is not None
    async with store.unit_of_work(one_write=True) as uow:
        wrote = await uow.write_message(KEY, [_auto(customer_id)], None, None, NOW, _applied(customer_id))
    assert [r.tag for r in wrote.added] == ["询价客户"] and wrote.applied_id is None
    assert await _tags(database) == ([(there.id, "询价客户", "active", "王丽", None)], [])


async def test_a_failed_message_write_applies_nothing(database: Database, only_postgres: None) -> None:
    customer_id = await _customer(database)
    with pytest.raises(IntegrityError):
        async with SqlTurnStore(database.engine).unit_of_work(one_write=True) as uow:
            await uow.write_message(KEY, [_auto(customer_id)], _text(customer_id), _event(customer_id + 1000), NOW,
                                    _applied(customer_id))
    assert await _tags(database) == ([], []) and await _stored(database) == ([], [], [])


async def test_sqlite_refuses_a_tag_applied_with_the_message_and_writes_nothing(database: Database) -> None:
    if database.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL applies it (above)")
    customer_id = await _customer(database)
    store = SqlTurnStore(database.engine)
    assert not store.applies_at_once
    with pytest.raises(ValueError, match="PostgreSQL only"):
        async with store.unit_of_work(one_write=True) as uow:
            await uow.write_message(KEY, [_auto(customer_id)], _text(customer_id), None, NOW, _applied(customer_id))
    assert await _tags(database) == ([], []) and await _stored(database) == ([], [], [])
