"""One-trip SQLite write transactions (storage.prepared): the same rows as SQLAlchemy's execution, all or nothing,
in the process's writer turn.

Each test on a file database whose connections fail at once on a held write lock (busy timeout 0): a write
that did not wait for its writer turn would fail with 'database is locked' instead of waiting.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, bindparam, select, text
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError

from core.records import CustomerDraft, NewSuggestion
from core.types import SuggestionStatus
from storage import tables as t
from storage.database import Database
from storage.prepared import insert_step, prepare, prepared, write_at_once
from storage.repositories import NO_TRANSACTION, _suggestion_if_absent, suggestion_row
from storage.turns import SqlTurnStore
from storage.writer import writer_of
from tests.storage.test_sqlite_writer import sqlite

__all__ = ["sqlite"]  # the fixture: a SQLite file whose connections never wait on a held lock

NOW = datetime(2026, 12, 6, 21, 5, 7, 123456, tzinfo=timezone(timedelta(hours=8)))  # not UTC: stored as UTC


async def _customer(database: Database, name: str = "上海明远科技") -> int:
    async with database.unit_of_work() as uow:
        return (await uow.customers.add(CustomerDraft(name=name), NOW)).id


def _suggestion(customer_id: int, key: str, tag: str = "询价客户", decided_by: str | None = "王丽") -> NewSuggestion:
    excerpt = "麻烦发一下[报价单](http://x) <at>王丽</at>"
    evidence = {"matched": ["报价", "价格"], "excerpt": excerpt, "n": [1, 2.5, None]}
    status = SuggestionStatus.ACCEPTED if decided_by else SuggestionStatus.PENDING
    return NewSuggestion(customer_id, key, "intent", tag, 0.8125, evidence, NOW, status, True, decided_by)


def _insert_suggestion() -> Any:
    return _suggestion_if_absent(sqlite_dialect.insert)


def _exists() -> Any:
    return select(t.suggestions.c.id).where(t.suggestions.c.message_key == bindparam("message_key"))


async def _raw(database: Database, key: str) -> list[tuple[Any, ...]]:
    """The stored row of the suggestion of `key`, every column as SQLite holds it (no type processing)."""
    async with database.engine.connect() as conn:
        rows = await conn.exec_driver_sql("SELECT * FROM suggestions WHERE message_key = ?", (key,))
        return [tuple(r) for r in rows]


async def _write(database: Database, steps: list[Any]) -> list[list[dict[str, Any]]]:
    async with database.engine.connect() as conn:
        await conn.execution_options(**{NO_TRANSACTION: True})
        result = await write_at_once(conn, steps)
        await conn.commit()
        return result


async def test_a_prepared_insert_stores_and_returns_what_sqlalchemy_does(sqlite: Database) -> None:
    customer_id = await _customer(sqlite)
    ours, theirs = _suggestion(customer_id, "m-ours"), _suggestion(customer_id, "m-theirs")
    row = suggestion_row(ours)
    [[returned]] = await _write(sqlite, [insert_step(sqlite.engine.dialect, _suggestion_if_absent, row)])
    async with sqlite.engine.begin() as conn:
        expected = (await conn.execute(_insert_suggestion(), suggestion_row(theirs))).one()._asdict()

    # Stored alike, byte for byte (the time as UTC text, the JSON as the engine serialises it) …
    [stored_ours], [stored_theirs] = await _raw(sqlite, "m-ours"), await _raw(sqlite, "m-theirs")
    skip = {0, 2}  # the id and the message key
    assert [v for i, v in enumerate(stored_ours) if i not in skip] == [
        v for i, v in enumerate(stored_theirs) if i not in skip
    ]
    # … and read back alike: aware UTC datetimes, the evidence as a dict, booleans.
    assert {k: v for k, v in returned.items() if k not in ("id", "message_key")} == {
        k: v for k, v in expected.items() if k not in ("id", "message_key")
    }
    assert returned["created_at"] == NOW and returned["created_at"].tzinfo is UTC
    assert returned["auto_applied"] is True and returned["evidence"]["n"] == [1, 2.5, None]


async def test_a_failing_statement_rolls_the_whole_transaction_back_and_raises_as_sqlalchemy_does(
    sqlite: Database,
) -> None:
    customer_id = await _customer(sqlite)
    dialect = sqlite.engine.dialect
    good = suggestion_row(_suggestion(customer_id, "m-1"))
    bad = suggestion_row(_suggestion(customer_id + 1000, "m-2"))  # no such customer: a foreign key fails
    step = prepared(dialect, _suggestion_if_absent, tuple(good))
    with pytest.raises(IntegrityError) as raised:
        await _write(sqlite, [(step, good), (step, bad)])
    assert "FOREIGN KEY" in str(raised.value) and "INSERT INTO suggestions" in str(raised.value)
    assert await _raw(sqlite, "m-1") == []
    # The connection and the writer turn are free again: the next write succeeds at once.
    assert not writer_of(sqlite.engine).busy  # type: ignore[union-attr]
    [[row]] = await _write(sqlite, [(step, good)])
    assert row["message_key"] == "m-1"


async def test_a_one_trip_write_waits_for_the_writer_turn_and_never_meets_a_held_lock(sqlite: Database) -> None:
    """Twenty one-trip writes race ten ordinary write transactions; with SQLite's busy timeout at 0 any of
    them meeting a held write lock would fail at once."""
    customer_id = await _customer(sqlite)
    dialect = sqlite.engine.dialect

    async def one_trip(i: int) -> None:
        row = suggestion_row(_suggestion(customer_id, f"trip-{i}"))
        await _write(sqlite, [insert_step(dialect, _suggestion_if_absent, row)])

    async def ordinary(i: int) -> None:
        async with sqlite.unit_of_work() as uow:
            await uow.customers.add(CustomerDraft(name=f"客户{i}"), NOW)
            await asyncio.sleep(0.002)  # hold the write lock across an await

    await asyncio.gather(*(one_trip(i) for i in range(20)), *(ordinary(i) for i in range(10)))
    async with sqlite.engine.connect() as conn:
        trips = await conn.scalar(text("SELECT count(*) FROM suggestions WHERE message_key LIKE 'trip-%'"))
    assert trips == 20


async def test_a_cancelled_write_keeps_the_writer_turn_until_its_transaction_ended(sqlite: Database) -> None:
    customer_id = await _customer(sqlite)
    dialect = sqlite.engine.dialect
    rows = [suggestion_row(_suggestion(customer_id, f"c-{i}", tag=f"标签{i}")) for i in range(3000)]
    step = prepared(dialect, _suggestion_if_absent, tuple(rows[0]))
    task = asyncio.create_task(_write(sqlite, [(step, row) for row in rows]))
    writer = writer_of(sqlite.engine)
    assert writer is not None
    while not writer.busy:  # the trip has started
        await asyncio.sleep(0)

    async def next_writer() -> None:
        async with sqlite.unit_of_work() as uow:
            await uow.customers.add(CustomerDraft(name="下一位"), NOW)

    waiting = asyncio.create_task(next_writer())
    await asyncio.sleep(0)  # queued for the turn
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Given the turn only once the thread ended the transaction: its BEGIN IMMEDIATE met no held lock.
    await waiting
    assert not writer.busy
    async with sqlite.engine.connect() as conn:
        stored = await conn.scalar(text("SELECT count(*) FROM suggestions WHERE message_key LIKE 'c-%'"))
    assert stored == 3000


async def test_a_one_trip_write_refuses_a_connection_with_a_transaction_open(sqlite: Database) -> None:
    customer_id = await _customer(sqlite)
    row = suggestion_row(_suggestion(customer_id, "m-open"))
    step = prepared(sqlite.engine.dialect, _suggestion_if_absent, tuple(row))
    async with sqlite.engine.begin() as conn:
        await conn.execute(select(t.customers.c.id))
        with pytest.raises(RuntimeError, match="a transaction is open"):
            await write_at_once(conn, [(step, row)])
    assert await _raw(sqlite, "m-open") == []
    assert not writer_of(sqlite.engine).busy  # type: ignore[union-attr]


def test_prepare_refuses_what_sqlalchemy_would_add_at_execution() -> None:
    metadata = MetaData()
    table = Table(
        "things",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(20)),
        Column("at", DateTime, default=lambda: datetime.now(UTC)),  # computed in Python when left out
    )
    dialect = sqlite_dialect.dialect()
    with pytest.raises(ValueError, match="computes values in Python"):
        prepare(table.insert(), dialect, ["name"])
    assert prepare(table.insert(), dialect, ["name", "at"]).names == ("name", "at")
    with pytest.raises(ValueError, match="rendered at execution"):
        prepare(select(table.c.id).where(table.c.name.in_(bindparam("names", expanding=True))), dialect)
    assert prepare(_exists(), dialect).columns == ("id",)


async def test_a_one_write_turn_holds_no_write_lock_while_it_reads(sqlite: Database) -> None:
    """SQLite's one-write unit of work reads outside any transaction: other writers go on meanwhile."""
    customer_id = await _customer(sqlite)
    writer = writer_of(sqlite.engine)
    assert writer is not None
    async with SqlTurnStore(sqlite.engine).unit_of_work(one_write=True) as turn:
        assert await turn.customers.get(customer_id) is not None
        assert not writer.busy
        async with sqlite.unit_of_work() as other:  # busy timeout 0: a held lock would fail this at once
            await other.customers.add(CustomerDraft(name="另一家"), NOW)
        wrote = await turn.write_message("m-turn", [_suggestion(customer_id, "m-turn")], None, None, NOW)
        assert [r.message_key for r in wrote.added] == ["m-turn"] and not writer.busy
    assert len(await _raw(sqlite, "m-turn")) == 1


async def test_none_goes_through_the_column_types_as_in_sqlalchemy(sqlite: Database) -> None:
    """A JSON column stores Python None as JSON null (not SQL NULL) unless told otherwise: the same here."""
    customer_id = await _customer(sqlite)
    ours = suggestion_row(_suggestion(customer_id, "n-ours"))
    theirs = suggestion_row(_suggestion(customer_id, "n-theirs"))
    ours["evidence"] = theirs["evidence"] = None
    [[returned]] = await _write(sqlite, [insert_step(sqlite.engine.dialect, _suggestion_if_absent, ours)])
    async with sqlite.engine.begin() as conn:
        expected = (await conn.execute(_insert_suggestion(), theirs)).one()._asdict()
    [stored_ours], [stored_theirs] = await _raw(sqlite, "n-ours"), await _raw(sqlite, "n-theirs")
    assert stored_ours[7] == stored_theirs[7] == "null"  # the evidence column, as stored
    assert returned["evidence"] is None and expected["evidence"] is None


async def test_an_engine_that_hides_parameters_keeps_them_out_of_the_error(sqlite: Database) -> None:
    customer_id = await _customer(sqlite)
    bad = suggestion_row(_suggestion(customer_id + 1000, "m-secret"))
    engine = sqlite.engine.sync_engine
    engine.hide_parameters = True  # create_engine(..., hide_parameters=True)
    try:
        with pytest.raises(IntegrityError) as raised:
            await _write(sqlite, [insert_step(sqlite.engine.dialect, _suggestion_if_absent, bad)])
    finally:
        engine.hide_parameters = False
    assert "m-secret" not in str(raised.value) and "hidden due to hide_parameters" in str(raised.value)
