"""`unit_of_work(read_only=True)`: reads without SQLite's write lock, refuses writes loudly on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import DBAPIError

from core.records import CustomerDraft
from core.types import Customer
from storage.database import Database

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
# SQLite (query_only): "attempt to write a readonly database"; PostgreSQL: "... in a read-only transaction".
REFUSED = r"(?i)readonly database|read-only transaction"


async def test_read_only_work_reads_and_refuses_writes(database: Database) -> None:
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="杭州青禾贸易"), NOW)
    async with database.unit_of_work(read_only=True) as uow:
        found = await uow.customers.get(customer.id)
    assert found is not None and found.name == "杭州青禾贸易"

    with pytest.raises(DBAPIError, match=REFUSED):
        async with database.unit_of_work(read_only=True) as uow:
            await uow.customers.add(CustomerDraft(name="苏州华辰电子"), NOW)

    # The refused write left nothing behind, and the pooled connection writes again for ordinary work.
    async with database.unit_of_work() as uow:
        again = await uow.customers.add(CustomerDraft(name="宁波海曙五金"), NOW)
        names = {c.name for c in await uow.customers.get_many([customer.id, again.id])}
    assert names == {"杭州青禾贸易", "宁波海曙五金"}


async def test_read_only_work_does_not_wait_for_a_writer(database: Database) -> None:
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="无锡恒通物流"), NOW)

    async def read() -> Customer | None:
        async with database.unit_of_work(read_only=True) as reader:
            return await reader.customers.get(customer.id)

    async with database.unit_of_work() as writer:
        await writer.customers.add(CustomerDraft(name="常州天宁机电"), NOW)  # holds the write lock
        # On SQLite a BEGIN IMMEDIATE would queue behind the writer until busy_timeout (10 s), then fail.
        seen = await asyncio.wait_for(read(), timeout=5)
    assert seen is not None and seen.name == "无锡恒通物流"  # and not the writer's uncommitted row


async def test_a_read_cancelled_mid_statement_ends_as_a_cancellation(database: Database) -> None:
    """A poller stopped at shutdown while its read runs must see its cancellation, not a cleanup error it
    would catch and loop on (which kept `kebiao serve` from stopping)."""
    slow = (
        "SELECT pg_sleep(5)"
        if database.engine.dialect.name == "postgresql"
        else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000) SELECT count(*) FROM c"
    )
    started = asyncio.Event()

    async def read() -> None:
        async with database.unit_of_work(read_only=True) as uow:
            started.set()
            await uow.customers._conn.exec_driver_sql(slow)

    task = asyncio.create_task(read())
    await started.wait()
    await asyncio.sleep(0.2)  # inside the statement
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=30)

    # The pool hands out connections that write again.
    async with database.unit_of_work() as uow:
        added = await uow.customers.add(CustomerDraft(name="嘉兴南湖纺织"), NOW)
    assert added.id > 0
