"""SQLite's single writer: the process's write transactions take turns (storage.writer), never SQLite's busy wait.

Each test turns SQLite's own busy timeout down to 0: a BEGIN IMMEDIATE that met a held write lock would fail at
once with 'database is locked'. Writes still all succeed, so none of them ever waited on SQLite's lock.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event, func, select, text

from app import DATABASE, create_app
from config import Settings
from core.records import CustomerDraft
from storage import tables as t
from storage.channels import SqlChannelStore
from storage.database import Database, open_database
from storage.writer import SqliteWriter
from tests.teams.conftest import connector, load_payload
from tests.teams.crash_harness import taxonomy_yaml
from tests.teams.fake_connector import FakeConnector

__all__ = ["connector"]

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


async def _no_busy_wait(database: Database) -> None:
    """Make every new connection fail at once on a held write lock, and drop the pooled ones."""

    @event.listens_for(database.engine.sync_engine, "connect")
    def _zero(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    await database.engine.dispose()


@pytest.fixture
async def sqlite(tmp_path: Path) -> Any:
    database = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'writer.db'}")
    await _no_busy_wait(database)
    try:
        yield database
    finally:
        await database.close()


async def test_turns_are_first_come_first_served_and_a_turn_is_given_back_once() -> None:
    writer = SqliteWriter(timeout_s=5)
    a, b, c = object(), object(), object()
    await writer.acquire(a)
    order: list[str] = []

    async def wait(name: str, conn: object) -> None:
        await writer.acquire(conn)
        order.append(name)

    waiting = [asyncio.create_task(wait("b", b)), asyncio.create_task(wait("c", c))]
    await asyncio.sleep(0.01)
    assert order == [] and writer.busy
    writer.release(c)  # not the holder: nothing happens
    await asyncio.sleep(0.01)
    assert order == []
    writer.release(a)
    writer.release(a)  # commit, then check-in: the second release is a no-op
    await asyncio.sleep(0.01)
    assert order == ["b"]
    writer.release(b)
    await asyncio.gather(*waiting)
    assert order == ["b", "c"]
    writer.release(c)
    assert not writer.busy


async def test_a_turn_that_never_comes_fails_like_sqlites_busy_timeout_and_says_why() -> None:
    writer = SqliteWriter(timeout_s=0.05)
    await writer.acquire("outer")
    with pytest.raises(sqlite3.OperationalError, match="database is locked: another write transaction"):
        await writer.acquire("inner")
    writer.release("outer")
    await writer.acquire("inner")  # the failed wait left nothing behind


async def test_concurrent_writers_on_every_path_never_meet_the_lock_and_lose_nothing(sqlite: Database) -> None:
    channels = SqlChannelStore(sqlite.engine)
    async with sqlite.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE bench_counter (n INTEGER NOT NULL)"))
        await conn.execute(text("INSERT INTO bench_counter VALUES (0)"))

    async def unit_of_work(i: int) -> None:
        async with sqlite.unit_of_work() as uow:
            await uow.customers.add(CustomerDraft(name=f"并发客户{i:03d}"), NOW)

    async def reference(i: int) -> None:
        await channels.save_reference("msteams", f"user-{i}", {"conversation": {"id": f"a:{i}"}}, None, NOW)

    async def read_modify_write(_: int) -> None:  # a lost update would show in the final count
        async with sqlite.engine.begin() as conn:
            n = (await conn.execute(text("SELECT n FROM bench_counter"))).scalar_one()
            await asyncio.sleep(0)  # let every other task run between the read and the write
            await conn.execute(text("UPDATE bench_counter SET n = :n"), {"n": n + 1})

    async def reader(_: int) -> int:
        async with sqlite.unit_of_work(read_only=True) as uow:
            return len(await uow.customers.find_by_name_key("", 1000))

    work = [f(i) for i in range(60) for f in (unit_of_work, reference, read_modify_write, reader)]
    await asyncio.gather(*work)

    async with sqlite.engine.connect() as conn:
        customers = (await conn.execute(select(func.count()).select_from(t.customers))).scalar_one()
        references = (await conn.execute(select(func.count()).select_from(t.conversation_references))).scalar_one()
        counter = (await conn.execute(text("SELECT n FROM bench_counter"))).scalar_one()
    assert (customers, references, counter) == (60, 60, 60)


async def test_a_failed_or_abandoned_write_gives_its_turn_back(sqlite: Database) -> None:
    async with sqlite.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE once (k TEXT PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO once VALUES ('a')"))
    with pytest.raises(Exception, match="UNIQUE"):
        async with sqlite.engine.begin() as conn:
            await conn.execute(text("INSERT INTO once VALUES ('a')"))
    with pytest.raises(RuntimeError):
        async with sqlite.unit_of_work() as uow:
            await uow.customers.add(CustomerDraft(name="放弃的客户"), NOW)
            raise RuntimeError("abandoned")
    async with asyncio.timeout(2):  # the next writer is not stuck behind either
        async with sqlite.unit_of_work() as uow:
            await uow.customers.add(CustomerDraft(name="下一个客户"), NOW)
    async with sqlite.unit_of_work(read_only=True) as uow:
        assert [c.name for c in await uow.customers.find_by_name_key("", 10)] == ["下一个客户"]


async def test_a_burst_of_teams_turns_on_sqlite_tags_each_message_once(
    aiohttp_client: Any, tmp_path: Path, connector: tuple[FakeConnector, str]
) -> None:
    messages = 32
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(taxonomy_yaml(messages), encoding="utf-8")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'kebiao.db'}",
        taxonomy_path=str(taxonomy),
        scheduler_enabled=False,
        tag_hard_cap=messages + 10,
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    database: Database = client.app[DATABASE]
    async with database.unit_of_work() as uow:
        await uow.customers.add(CustomerDraft(name="并发测试客户"), NOW)
    await _no_busy_wait(database)
    fake, url = connector

    async def post(activity_id: str, text_: str) -> int:
        body = load_payload("personal_message", url)
        body.update(id=activity_id, text=text_)
        response = await client.post("/api/messages", json=body)
        await response.read()
        return response.status

    assert await post("burst-link", "link 并发测试客户") == 200
    statuses = await asyncio.gather(*(post(f"burst-{i:04d}", f"客户要 sku{i:04d} 的报价") for i in range(messages)))

    assert statuses == [200] * messages
    async with database.engine.connect() as conn:
        rows = (await conn.execute(select(t.tag_events.c.evidence))).all()
    keys = [json.loads(e) if isinstance(e, str) else e for (e,) in rows]
    per_message = sorted(str(k.get("message_key", "")).rsplit(":", 1)[-1] for k in keys)
    assert per_message == [f"burst-{i:04d}" for i in range(messages)]
    replies = {c.reply_to_id for c in fake.delivered if c.body.get("attachments")}
    assert {f"burst-{i:04d}" for i in range(messages)} <= replies
