"""PostgreSQL statements sent to asyncpg directly (storage.prepared.execute_direct): the same rows as SQLAlchemy's
execution, all or nothing, errors raised as SQLAlchemy raises them, and a dead connection never pooled again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Integer, String, column, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.records import CustomerDraft, NewSuggestion
from core.types import SuggestionStatus
from storage import tables as t
from storage.channels import FINISH_MOST, SqlChannelStore
from storage.database import Database
from storage.prepared import Step, execute_direct, insert_step, prepare, prepared
from storage.repositories import _suggestion_if_absent, suggestion_record, suggestion_row
from storage.statements import count_statements

# Every test here is PostgreSQL's: the `database` fixture's PostgreSQL case only.
pytestmark = pytest.mark.parametrize("database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)

NOW = datetime(2026, 12, 6, 21, 5, 7, 123456, tzinfo=timezone(timedelta(hours=8)))  # not UTC: stored as UTC


async def _customer(database: Database) -> int:
    async with database.unit_of_work() as uow:
        return (await uow.customers.add(CustomerDraft(name="上海明远科技"), NOW)).id


def _suggestion(customer_id: int, key: str) -> NewSuggestion:
    evidence = {"matched": ["报价", "价格"], "excerpt": "麻烦发一下[报价单](http://x)", "n": [1, 2.5, None]}
    return NewSuggestion(
        customer_id, key, "intent", "询价客户", 0.8125, evidence, NOW, SuggestionStatus.ACCEPTED, True, "王丽"
    )


async def _stored(database: Database, key: str) -> list[Any]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(select(t.suggestions).where(t.suggestions.c.message_key == key))
        return [suggestion_record(row._mapping) for row in rows]


async def test_a_direct_insert_returns_what_sqlalchemy_reads_back(database: Database) -> None:
    customer_id = await _customer(database)
    step = insert_step(database.engine.dialect, _suggestion_if_absent, suggestion_row(_suggestion(customer_id, "m-1")))
    async with database.engine.connect() as conn:
        [[returned]] = await execute_direct(conn, [step])
    [stored] = await _stored(database, "m-1")
    assert suggestion_record(returned) == stored  # the float, the JSON and the UTC times read alike
    assert returned["score"] == 0.8125 and type(returned["score"]) is float
    assert returned["created_at"] == NOW and returned["created_at"].tzinfo is not None
    assert returned["evidence"]["n"] == [1, 2.5, None]


async def test_a_failing_statement_raises_as_sqlalchemy_does_and_writes_nothing(database: Database) -> None:
    customer_id = await _customer(database)
    dialect = database.engine.dialect
    good = suggestion_row(_suggestion(customer_id, "m-1"))
    bad = suggestion_row(_suggestion(customer_id + 1000, "m-2"))  # no such customer: a foreign key fails
    step = prepared(dialect, _suggestion_if_absent, tuple(good))
    async with database.engine.connect() as conn:
        with pytest.raises(IntegrityError) as raised:
            await execute_direct(conn, [(step, good), (step, bad)])  # two statements: one transaction
        assert "foreign key" in str(raised.value) and "INSERT INTO suggestions" in str(raised.value)
        assert await _stored(database, "m-1") == []
        with pytest.raises(IntegrityError):
            await execute_direct(conn, [(step, bad)])  # alone
        [[row]] = await execute_direct(conn, [(step, good)])  # the connection is usable again
    assert row["message_key"] == "m-1"


async def test_a_connection_that_died_is_invalidated_and_never_handed_out_again(database: Database) -> None:
    customer_id = await _customer(database)
    step = insert_step(database.engine.dialect, _suggestion_if_absent, suggestion_row(_suggestion(customer_id, "m-1")))
    async with database.engine.connect() as conn:
        pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        await conn.rollback()
        async with database.engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as raised:
            await execute_direct(conn, [step])
        assert raised.value.connection_invalidated
    async with database.engine.connect() as conn:  # a live connection, not the dead one
        assert await conn.scalar(text("SELECT pg_backend_pid()")) != pid
        await conn.rollback()
        [[row]] = await execute_direct(conn, [step])
    assert row["message_key"] == "m-1"


async def test_a_direct_statement_refuses_a_connection_with_a_transaction_open(database: Database) -> None:
    customer_id = await _customer(database)
    step = insert_step(database.engine.dialect, _suggestion_if_absent, suggestion_row(_suggestion(customer_id, "m-1")))
    async with database.engine.begin() as conn:
        await conn.execute(text("SELECT 1"))
        with pytest.raises(RuntimeError, match="no transaction open"):
            await execute_direct(conn, [step])  # it would not be atomic on its own, nor part of this one


@pytest.mark.parametrize("count", [1, 3, FINISH_MOST + 6])
async def test_finishing_any_number_of_leases_finishes_each_of_them(database: Database, count: int) -> None:
    store = SqlChannelStore(database.engine)
    keys = [f"msteams:a:conversation:activity-{i}" for i in range(count)]
    until = NOW + timedelta(seconds=30)
    assert await store.settle_leases("teams", keys, NOW, until, []) == set(keys)
    with count_statements(database.engine) as counted:
        assert await store.settle_leases("teams", ["late"], NOW, until, keys) == {"late"}
    # The UPDATEs (FINISH_MOST keys each) and the take: one transaction.
    assert (counted.statements, counted.writes) == (-(-count // FINISH_MOST) + 1, 1)
    for key in keys:
        lease = await store.inbound_lease("teams", key)
        assert lease is not None and lease.finished
    lease = await store.inbound_lease("teams", "late")
    assert lease is not None and lease.until == until.astimezone(UTC)
    # A claim of a key that is held (not lapsed) is not taken; once it lapsed it is.
    assert await store.settle_leases("teams", ["late"], NOW, until, []) == set()
    assert await store.settle_leases("teams", ["late"], until + timedelta(seconds=1), until, []) == {"late"}


async def test_a_cancelled_statement_leaves_its_connection_usable(database: Database) -> None:
    """A turn cancelled while its statement runs (the client went away): the server's statement is cancelled
    and the connection serves the next one, in or out of a transaction."""
    slow = prepare(text("SELECT pg_sleep(5) AS slept").columns(column("slept", String)), database.engine.dialect)
    quick = prepare(text("SELECT 1 AS one").columns(column("one", Integer)), database.engine.dialect)
    async with database.engine.connect() as conn:
        alone: list[Step] = [(slow, {})]
        second: list[Step] = [(quick, {}), (slow, {})]  # the second statement of a transaction
        for steps in (alone, second):
            running = asyncio.create_task(execute_direct(conn, steps))
            await asyncio.sleep(0.2)
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(running, 2.0)
            assert await asyncio.wait_for(execute_direct(conn, [(quick, {})]), 2.0) == [[{"one": 1}]]


async def test_an_engine_that_hides_parameters_keeps_them_out_of_the_error(database: Database) -> None:
    customer_id = await _customer(database)
    bad = suggestion_row(_suggestion(customer_id + 1000, "m-secret"))
    step = insert_step(database.engine.dialect, _suggestion_if_absent, bad)
    engine = database.engine.sync_engine
    engine.hide_parameters = True  # create_engine(..., hide_parameters=True)
    try:
        async with database.engine.connect() as conn:
            with pytest.raises(IntegrityError) as raised:
                await execute_direct(conn, [step])
    finally:
        engine.hide_parameters = False
    assert "m-secret" not in str(raised.value) and "hidden due to hide_parameters" in str(raised.value)
