"""Opening, migrating and pinging the database on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from core.records import CustomerDraft
from core.types import AssignmentState, Source
from storage.database import Database, DatabaseError, head_revision, open_database
from tagging.taxonomy import Taxonomy

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


async def test_open_migrates_to_head(database: Database) -> None:
    assert await database.current_revision() == head_revision()
    await database.ping()


async def test_active_assignment_unique_but_history_kept(database: Database) -> None:
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="上海明远科技"), NOW)
        first = await uow.assignments.insert_active(
            customer.id, "value", "VIP客户", Source.MANUAL, "u1", NOW, None
        )
        again = await uow.assignments.insert_active(
            customer.id, "value", "ＶＩＰ客户", Source.MANUAL, "u1", NOW, None
        )
        assert first is not None and again is None  # same normalised name: still one active row
        assert await uow.assignments.end(first.id, AssignmentState.REMOVED, NOW)
        assert not await uow.assignments.end(first.id, AssignmentState.REMOVED, NOW)
        renewed = await uow.assignments.insert_active(
            customer.id, "value", "VIP客户", Source.MANUAL, "u2", NOW, None
        )
        assert renewed is not None and renewed.id != first.id


async def test_datetimes_come_back_aware_utc(database: Database) -> None:
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="杭州云栖"), NOW)
        await uow.assignments.insert_active(customer.id, "stage", "询价客户", Source.KEYWORD, "bot", NOW, NOW)
    async with database.unit_of_work() as uow:
        (held,) = await uow.assignments.active_for(customer.id)
    assert held.assigned_at == NOW and held.assigned_at.tzinfo is not None
    assert held.expires_at == NOW


async def test_unit_of_work_rolls_back_on_error(database: Database) -> None:
    with pytest.raises(RuntimeError):
        async with database.unit_of_work() as uow:
            await uow.customers.add(CustomerDraft(name="回滚测试公司"), NOW)
            raise RuntimeError("boom")
    async with database.unit_of_work() as uow:
        assert await uow.customers.find_exact("回滚测试公司") == []


async def test_sqlite_pragmas_and_data_folder(tmp_path: Path) -> None:
    db = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'kebiao.db'}")
    try:
        assert (tmp_path / "data" / "kebiao.db").exists()
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 10_000
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL: WAL commits skip fsync
    finally:
        await db.close()


async def test_reopening_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    await (await open_database(url)).close()
    db = await open_database(url)
    try:
        assert await db.current_revision() == head_revision()
    finally:
        await db.close()


@pytest.mark.parametrize(
    "url, reason",
    [
        ("mysql+aiomysql://x/y", "unsupported"),
        ("sqlite:///x.db", "aiosqlite"),
        ("nonsense", "not a database URL"),
    ],
)
async def test_bad_urls_are_refused_clearly(url: str, reason: str) -> None:
    with pytest.raises(DatabaseError, match=reason):
        await open_database(url)


async def test_unreachable_postgres_is_an_error() -> None:
    with pytest.raises(DatabaseError, match="cannot open database"):
        await open_database("postgresql+asyncpg://postgres@127.0.0.1:1/none")


async def test_assignments_by_id_in_any_state(database: Database) -> None:
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="上海明远科技"), NOW)
        held = await uow.assignments.insert_active(customer.id, "value", "VIP客户", Source.MANUAL, "u1", NOW, None)
        ended = await uow.assignments.insert_active(customer.id, "stage", "询价", Source.MANUAL, "u1", NOW, None)
        assert held is not None and ended is not None
        await uow.assignments.end(ended.id, AssignmentState.REMOVED, NOW)
    async with database.unit_of_work(read_only=True) as uow:
        found = await uow.assignments.get_many([ended.id, held.id, held.id, ended.id + 1000])
    assert [(a.id, a.tag, a.state) for a in found] == [
        (held.id, "VIP客户", AssignmentState.ACTIVE),
        (ended.id, "询价", AssignmentState.REMOVED),
    ]
    assert found[0].customer_id == customer.id


async def test_the_current_taxonomy_version_is_read_without_its_document(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    async with database.unit_of_work(read_only=True) as uow:
        assert await uow.taxonomies.current_version() is None
    async with database.unit_of_work() as uow:
        await uow.taxonomies.add_version(sample_taxonomy, "admin", datetime.now(UTC), "first")
        await uow.taxonomies.add_version(sample_taxonomy, "admin", datetime.now(UTC), "second")
    async with database.unit_of_work(read_only=True) as uow:
        number = await uow.taxonomies.current_version()
        current = await uow.taxonomies.current()
    assert current is not None and number == current.version == 2
