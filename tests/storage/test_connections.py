"""How statements reach the database: SQLite's one trip per statement, PostgreSQL's ping only after idling."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite.core
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage import database as database_module
from storage.bulk import copy_rows
from storage.database import Database, create_engine
from tests.conftest import postgres_url

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False, unique=True),
)


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """The stock aiosqlite engine and Kebiao's, each on its own file with the same table."""
    stock = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'stock.db'}")
    ours = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'ours.db'}")
    for engine in (stock, ours):
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
    try:
        yield stock, ours
    finally:
        await stock.dispose()
        await ours.dispose()


async def _script(engine: AsyncEngine) -> list[Any]:
    """The same statements on either engine; everything a caller can observe, in order."""
    seen: list[Any] = []
    async with engine.begin() as conn:
        result = await conn.execute(insert(things).values(name="甲"))
        seen.append(("lastrowid", result.lastrowid, result.inserted_primary_key))
        result = await conn.execute(insert(things), [{"name": "乙"}, {"name": "丙"}, {"name": "丁"}])
        seen.append(("executemany", result.rowcount))
        returned = await conn.execute(insert(things).values(name="戊").returning(things.c.id, things.c.name))
        seen.append(("returning", [tuple(r) for r in returned]))
        changed = await conn.execute(update(things).where(things.c.id > 2).values(name=things.c.name + "!"))
        seen.append(("rowcount", changed.rowcount))
        result = await conn.execute(select(things).order_by(things.c.id))
        seen.append(("keys", list(result.keys())))
        seen.append(("rows", [tuple(r) for r in result]))
        one = await conn.execute(select(things.c.name).where(things.c.id == 99))
        seen.append(("none", one.first()))
        seen.append(("scalar", await conn.scalar(select(things.c.name).where(things.c.id == 1))))
        streamed = await conn.stream(select(things.c.id).order_by(things.c.id))
        seen.append(("stream", [row[0] async for row in streamed]))
        seen.append(("pragma", (await conn.exec_driver_sql("PRAGMA user_version")).scalar()))
    with pytest.raises(IntegrityError) as refused:
        async with engine.begin() as conn:
            await conn.execute(insert(things).values(name="己"))
            await conn.execute(insert(things).values(name="甲"))
    seen.append(("integrity", type(refused.value.orig).__name__, "UNIQUE" in str(refused.value.orig)))
    with pytest.raises(IntegrityError):  # the transaction's first statement fails: it is rolled back all the same
        async with engine.begin() as conn:
            await conn.execute(insert(things).values(name="甲"))
    async with engine.begin() as conn:  # an empty transaction
        pass
    async with engine.begin() as conn:  # streamed first: its rows are read inside the transaction
        streamed = await conn.stream(select(things.c.id).where(things.c.id < 3).order_by(things.c.id))
        seen.append(("stream first", [row[0] async for row in streamed]))
        await conn.execute(insert(things).values(name="庚"))
    async with engine.connect() as conn:
        seen.append(("after rollback", await conn.scalar(select(things.c.id).where(things.c.name == "己"))))
    return seen


async def test_one_trip_driver_answers_as_stock_aiosqlite(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    stock, ours = engines
    expected = await _script(stock)
    assert await _script(ours) == expected
    assert ("rows", [(1, "甲"), (2, "乙"), (3, "丙!"), (4, "丁!"), (5, "戊!")]) in expected


async def test_one_trip_per_statement(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement and its rows cost one call on aiosqlite's thread (the stock adapter makes four)."""
    stock, ours = engines
    trips = 0
    original: Callable[..., Any] = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal trips
        trips += 1
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.core.Connection, "_execute", counted)

    async def ten_reads(engine: AsyncEngine) -> int:
        nonlocal trips
        async with engine.connect() as conn:
            await conn.execute(select(things.c.id))  # the connection is open and its transaction begun
            trips = 0
            for i in range(10):
                assert (await conn.execute(select(things.c.id).where(things.c.id == i))).all() == []
            return trips

    assert await ten_reads(ours) == 10
    assert await ten_reads(stock) >= 30  # what the one-trip cursor saves; fails if it is not in use


async def test_a_transaction_costs_its_statements_and_its_commit(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN goes with the first statement, and no ROLLBACK follows a COMMIT when the connection is returned."""
    stock, ours = engines
    sent: list[str] = []
    original: Callable[..., Any] = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(fn, "__name__", "call"))
        return await original(self, fn, *args, **kwargs)

    async def transactions(engine: AsyncEngine) -> list[int]:
        trips = []
        async with engine.connect() as conn:
            await conn.execute(select(things.c.id))  # opened and pooled before counting
        monkeypatch.setattr(aiosqlite.core.Connection, "_execute", counted)
        try:
            for statements in (2, 1, 0):
                sent.clear()
                async with engine.begin() as conn:
                    for i in range(statements):
                        await conn.execute(insert(things).values(name=f"{engine.url.database}-{statements}-{i}"))
                trips.append(len(sent))
        finally:
            monkeypatch.setattr(aiosqlite.core.Connection, "_execute", original)
        return trips

    ours_trips = await transactions(ours)
    assert ours_trips == [3, 2, 0]  # statements + COMMIT; an empty transaction sends nothing
    stock_trips = await transactions(stock)  # BEGIN, its statements' cursor steps, COMMIT, ROLLBACK at check-in
    assert all(mine < theirs for mine, theirs in zip(ours_trips, stock_trips, strict=True)), stock_trips


@pytest.fixture
async def beside(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, sqlite3.Connection]]:
    """Kebiao's engine on a file with the table, and a plain sqlite3 connection to the same file (another
    process, as far as SQLite's locks go) that never waits for a lock."""
    path = tmp_path / "shared.db"
    ours = create_engine(f"sqlite+aiosqlite:///{path}")
    async with ours.begin() as conn:
        await conn.run_sync(metadata.create_all)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        yield ours, other
    finally:
        other.close()
        await ours.dispose()


async def test_a_streamed_first_statement_runs_inside_the_write_transaction(
    beside: tuple[AsyncEngine, sqlite3.Connection],
) -> None:
    """A streamed cursor is aiosqlite's own: the held BEGIN IMMEDIATE is sent before it, so the write lock is
    held from that first read on, as with the stock adapter."""
    ours, other = beside
    async with ours.begin() as conn:
        streamed = await conn.stream(select(things.c.id))
        assert [row async for row in streamed] == []
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")


async def test_a_failed_held_begin_leaves_the_connection_usable(beside: tuple[AsyncEngine, sqlite3.Connection]) -> None:
    """A BEGIN sent with the first statement that fails (another process holds the write lock) fails that
    statement, and the connection's next transaction begins as usual."""
    ours, other = beside
    async with ours.connect() as conn:
        await conn.exec_driver_sql("PRAGMA busy_timeout=0")
        await conn.commit()
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"):
            await conn.execute(insert(things).values(name="甲"))
        await conn.rollback()
        other.execute("ROLLBACK")
        await conn.execute(insert(things).values(name="甲"))
        await conn.commit()
    async with ours.connect() as conn:
        assert (await conn.execute(select(things.c.name))).scalars().all() == ["甲"]


async def test_a_burst_reuses_pooled_connections(database: Database) -> None:
    """Concurrent units of work reuse pooled connections instead of opening (and closing) overflow ones: on
    SQLite each is a thread and three pragmas, on PostgreSQL a server process and its prepared statements."""
    opened = 0

    def count(*_: Any) -> None:
        nonlocal opened
        opened += 1

    event.listen(database.engine.sync_engine, "connect", count)

    async def read() -> None:
        async with database.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(0.01)

    for _ in range(5):
        await asyncio.gather(*(read() for _ in range(12)))
    assert opened <= 12  # each connection opened once, then reused by the later bursts


# ---------------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
async def postgres_engine() -> AsyncIterator[AsyncEngine]:
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not reachable at the default URL and KEBIAO_TEST_POSTGRES_URL is unset")
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _count_pings(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings = [0]
    original = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings[0] += 1
        return original(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


@pytest.mark.postgres
async def test_postgres_connection_in_steady_use_is_not_pinged(
    postgres_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _count_pings(postgres_engine, monkeypatch)
    for _ in range(20):
        async with postgres_engine.connect() as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
    assert pings[0] == 0


@pytest.mark.postgres
async def test_postgres_dead_idle_connection_is_replaced_before_use(
    postgres_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server dropped a pooled connection while it sat idle: the next caller never sees the failure."""
    monkeypatch.setattr(database_module, "POSTGRES_PING_IDLE_S", 0.05)  # read at each checkout
    pings = _count_pings(postgres_engine, monkeypatch)
    async with postgres_engine.connect() as conn:
        backend = await conn.scalar(text("SELECT pg_backend_pid()"))
    url = postgres_url()
    assert url is not None
    admin = create_async_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    finally:
        await admin.dispose()
    await asyncio.sleep(0.1)
    async with postgres_engine.connect() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1
        assert await conn.scalar(text("SELECT pg_backend_pid()")) != backend
    assert pings[0] >= 1


@pytest.mark.postgres
async def test_postgres_copy_first_in_a_transaction_rolls_back_with_it(postgres_engine: AsyncEngine) -> None:
    """COPY goes straight to the driver: run first in a transaction, it must still roll back with it."""
    name = f"copy_test_{uuid.uuid4().hex[:12]}"
    shape = Table(name, MetaData(), Column("id", Integer), Column("name", String))
    async with postgres_engine.begin() as conn:
        await conn.execute(text(f'CREATE TABLE "{name}" (id bigint PRIMARY KEY, name text NOT NULL)'))
    try:
        with pytest.raises(RuntimeError):
            async with postgres_engine.begin() as conn:
                await copy_rows(conn, shape, [{"id": 1, "name": "甲"}])
                raise RuntimeError("the unit of work fails after its COPY")
        async with postgres_engine.connect() as conn:
            assert await conn.scalar(text(f'SELECT count(*) FROM "{name}"')) == 0
    finally:
        async with postgres_engine.begin() as conn:
            await conn.execute(text(f'DROP TABLE "{name}"'))
