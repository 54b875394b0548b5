"""Lease holders: a lease whose process is gone is retaken at once on PostgreSQL, a live holder's never early."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from core.chat.turns import TurnLeases
from storage import tables as t
from storage.channels import SqlChannelStore
from storage.database import Database
from storage.lease_holder import LeaseHolder
from tests.conftest import postgres_url

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
KEY = "msteams:a:conversation:activity-1"
ROOT = Path(__file__).resolve().parents[2]
# A process that holds a lease-holder lock, prints its id, then waits to be killed.
HOLDER_PROCESS = """
import asyncio, sys
from sqlalchemy.ext.asyncio import create_async_engine
from storage.lease_holder import LeaseHolder

async def main():
    holder = LeaseHolder(create_async_engine(sys.argv[1]))
    await holder.start()
    print(holder.current(), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def leases(database: Database, holder: LeaseHolder | None, at: datetime, wait: float = 0.2) -> TurnLeases:
    """One process's leases, named by `holder`, at a fixed time (waits shortened so the tests stay quick)."""
    store = SqlChannelStore(database.engine, holder=holder.current if holder else lambda: None)
    return TurnLeases(store, "teams", wait=wait, poll=0.02, clock=lambda: at)


async def stored_holder(database: Database) -> int | None:
    async with database.engine.connect() as conn:
        return (await conn.execute(select(t.inbound_dedup.c.holder))).scalar_one()


@pytest.fixture
async def two_holders(database: Database) -> AsyncIterator[list[LeaseHolder]]:
    holders = [LeaseHolder(database.engine), LeaseHolder(database.engine)]
    for holder in holders:
        await holder.start()
    yield holders
    for holder in holders:
        await holder.close()


@pytest.fixture
def postgres_holders(database: Database, two_holders: list[LeaseHolder]) -> list[LeaseHolder]:
    """Two processes' holders, for what only PostgreSQL does (SQLite serves one process: no holders)."""
    only_postgres(database)
    return two_holders


def only_postgres(database: Database) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("holders are named on PostgreSQL only; SQLite serves one process")


async def test_a_lease_whose_holder_is_gone_is_taken_before_it_lapses_and_a_live_ones_is_not(
    database: Database, two_holders: list[LeaseHolder]
) -> None:
    dying, other = two_holders
    assert await leases(database, dying, T0).claim(KEY)
    soon = T0 + timedelta(seconds=5)  # the lease runs to T0 + 10 s
    assert not await leases(database, other, soon).claim(KEY)  # its holder lives: the turn runs there
    await dying.close()  # as its connection closes when the process dies
    postgres = database.engine.dialect.name == "postgresql"
    assert await leases(database, other, soon).claim(KEY) is postgres  # SQLite has no holders: it must lapse
    if postgres:
        assert await stored_holder(database) == other.current()
        assert not await leases(database, dying, soon).claim(KEY)  # and the new holder's lease holds


async def test_a_retry_waiting_on_a_live_holder_takes_the_lease_as_soon_as_it_dies(
    database: Database, postgres_holders: list[LeaseHolder]
) -> None:
    dying, other = postgres_holders
    assert await leases(database, dying, T0).claim(KEY)
    retry = asyncio.create_task(leases(database, other, T0 + timedelta(seconds=1), wait=5.0).claim(KEY))
    await asyncio.sleep(0.1)
    assert not retry.done()  # waiting: the turn runs in a live process
    await dying.close()
    assert await asyncio.wait_for(retry, 2.0) is True


async def test_a_lease_without_a_holder_still_waits_to_lapse(database: Database) -> None:
    """Leases written before holders existed, or while a process had no lock, are taken only once lapsed."""
    assert await leases(database, None, T0).claim(KEY)
    assert await stored_holder(database) is None
    assert not await leases(database, None, T0 + timedelta(seconds=5)).claim(KEY)
    assert await leases(database, None, T0 + timedelta(seconds=11)).claim(KEY)


async def test_a_lock_is_taken_on_postgres_only(database: Database) -> None:
    holder = LeaseHolder(database.engine)
    await holder.start()
    try:
        assert (holder.current() is None) is (database.engine.dialect.name != "postgresql")
    finally:
        await holder.close()
    assert holder.current() is None


async def test_a_server_whose_database_refuses_the_lock_connection_starts_with_lapsing_leases() -> None:
    engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")  # nothing listens on port 1
    holder = LeaseHolder(engine, check_every=0.05)
    try:
        await holder.start()  # logs the failure; does not raise
        assert holder.current() is None
        await asyncio.sleep(0.2)  # the background look keeps trying, and failing, quietly
        assert holder.current() is None
    finally:
        await holder.close()
        await engine.dispose()


async def test_renewals_write_the_current_holder_after_its_connection_was_cut(
    database: Database, postgres_holders: list[LeaseHolder]
) -> None:
    mine, _ = postgres_holders
    turns = leases(database, mine, T0)
    assert await turns.claim(KEY)
    first = mine.current()
    assert first is not None and await stored_holder(database) == first
    url = postgres_url()
    assert url is not None
    admin = create_async_engine(url)
    try:
        async with admin.begin() as conn:  # the server drops the lock's connection (a restart, a network fault)
            cut = await conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                     "AND ((classid::bigint << 32) | objid::bigint) = :id"),
                {"id": first},
            )
            assert cut.scalar_one() is True
    finally:
        await admin.dispose()
    await asyncio.sleep(0.1)
    await mine.check()  # the background look, every few seconds
    second = mine.current()
    assert second is not None and second != first
    await turns.renew()
    assert await stored_holder(database) == second


@pytest.mark.postgres
async def test_a_killed_process_frees_its_leases_at_once(database: Database) -> None:
    """kill -9 of a real process: PostgreSQL frees its lock as its connection closes."""
    only_postgres(database)
    url = postgres_url()
    assert url is not None
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER_PROCESS, url], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        child_id = int(line)
        store = SqlChannelStore(database.engine, holder=lambda: child_id)
        assert await store.settle_leases("teams", [KEY], T0, T0 + timedelta(seconds=10), []) == {KEY}
        other = LeaseHolder(database.engine)
        await other.start()
        try:
            soon = T0 + timedelta(seconds=1)
            assert not await leases(database, other, soon).claim(KEY)
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            assert await leases(database, other, soon, wait=5.0).claim(KEY)
            assert await stored_holder(database) == other.current()
        finally:
            await other.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
