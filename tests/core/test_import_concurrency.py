"""Customer import shares the database: checking holds no write lock, writing is one short set-based transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event

from core.importing.customers import import_customers
from core.importing.files import CustomerRow, ImportFileError
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules, apply_tag
from core.types import Source
from storage.database import Database
from storage.repositories import SqlUnitOfWork
from tagging.taxonomy import Taxonomy

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 4, 1, 10, 0, tzinfo=SHANGHAI)
RULES = TaggingRules(tz=SHANGHAI)

Hook = Callable[[], Awaitable[None]]


class _Watched:
    """The database as a Store that records every unit of work's mode and can run a hook while planning."""

    def __init__(self, database: Database, while_planning: Hook | None = None) -> None:
        self.database = database
        self.while_planning = while_planning
        self.modes: list[bool] = []

    def unit_of_work(self, read_only: bool = False) -> Any:  # a UnitOfWork (its hooked wrapper)
        self.modes.append(read_only)
        return _Hooked(self.database.unit_of_work(read_only), self.while_planning if read_only else None)

    async def ping(self) -> None:
        await self.database.ping()


class _Hooked:
    def __init__(self, inner: SqlUnitOfWork, hook: Hook | None) -> None:
        self.inner = inner
        self.hook = hook

    async def __aenter__(self) -> SqlUnitOfWork:
        uow = await self.inner.__aenter__()
        if self.hook is not None:
            hook, lookup = self.hook, uow.customers.find_for_import_many

            async def find(drafts: Sequence[CustomerDraft], limit: int = 5) -> list[list[Any]]:
                await hook()
                return await lookup(drafts, limit)

            uow.customers.find_for_import_many = find  # type: ignore[method-assign]
        return uow

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)


def _rows(count: int) -> list[CustomerRow]:
    """Customers C-00000…; even rows tagged VIP客户, odd rows 询价客户 (so a mixed-up id would show)."""
    tags = ("VIP客户", "询价客户")
    return [CustomerRow(row=i + 2, name=f"客户{i:05d}", crm_id=f"C-{i:05d}", tags=(tags[i % 2],)) for i in range(count)]


async def test_a_tag_applied_while_an_import_is_checked_commits(database: Database, sample_taxonomy: Taxonomy) -> None:
    async with database.unit_of_work() as uow:
        other = await uow.customers.add(CustomerDraft(name="并发客户"), NOW)
    applied: list[str] = []

    async def chat_turn() -> None:
        if applied:
            return
        # A chat turn writing while the import is being checked: with the import holding SQLite's write lock
        # this would wait for the busy timeout and fail with "database is locked".
        async with database.unit_of_work() as uow:
            change = await apply_tag(
                uow, sample_taxonomy, RULES, other.id, "询价客户", actor="agent", source=Source.MANUAL, now=NOW
            )
        applied.append(change.outcome)

    store = _Watched(database, chat_turn)
    summary = await import_customers(store, sample_taxonomy, RULES, _rows(1500), actor="admin", now=NOW)
    assert applied == ["added"]
    assert (summary.created, summary.tags_applied) == (1500, 1500)
    assert store.modes == [True, False]  # checked read-only, then one writing unit of work
    async with database.unit_of_work(read_only=True) as uow:
        assert [a.tag for a in await uow.assignments.active_for(other.id)] == ["询价客户"]


async def test_a_dry_run_never_opens_a_writing_unit_of_work(database: Database, sample_taxonomy: Taxonomy) -> None:
    store = _Watched(database)
    summary = await import_customers(store, sample_taxonomy, RULES, _rows(300), actor="admin", now=NOW, dry_run=True)
    assert summary.dry_run and summary.created == 300 and summary.tags_applied == 300
    assert store.modes == [True]
    bad = [*_rows(2), CustomerRow(row=9, name="坏行", tags=("不存在标签",))]
    with pytest.raises(ImportFileError):
        await import_customers(store, sample_taxonomy, RULES, bad, actor="admin", now=NOW)
    assert store.modes == [True, True]  # refused while checking: nothing was ever written


async def test_the_write_is_a_bounded_number_of_statements(database: Database, sample_taxonomy: Taxonomy) -> None:
    """3,000 rows are written in a few dozen statements (set-based), not several per row."""
    first = await import_customers(database, sample_taxonomy, RULES, _rows(1000), actor="admin", now=NOW)
    assert first.created == 1000
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()[:3]).upper())

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        rows = [*(r.__class__(**{**_fields(r), "region": "华东"}) for r in _rows(1000)), *_rows(3000)[1000:]]
        summary = await import_customers(database, sample_taxonomy, RULES, rows, actor="admin", now=NOW)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    assert (summary.created, summary.updated, summary.tags_applied) == (2000, 1000, 2000)
    writes = [s for s in statements if s.startswith(("INSERT", "UPDATE", "DELETE"))]
    from collections import Counter

    assert len(statements) < 60 and len(writes) < 30, Counter(statements)
    async with database.unit_of_work(read_only=True) as uow:
        for crm_id, tag in (("C-01000", "VIP客户"), ("C-02001", "询价客户"), ("C-02998", "VIP客户")):
            [customer] = await uow.customers.find_exact(crm_id)
            assert customer.name == f"客户{crm_id[2:]}" and customer.region == ""
            [held] = await uow.assignments.active_for(customer.id)
            assert held.tag == tag and held.assigned_at == NOW and held.source is Source.IMPORT
            [added] = await uow.events.for_customer(customer.id, 0, 10)
            assert (added.tag, added.at, added.evidence) == (tag, NOW, {"row": int(crm_id[2:]) + 2})
            assert customer.attributes == {}
        [updated] = await uow.customers.find_exact("C-00007")
        assert updated.region == "华东"


def _fields(row: CustomerRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__slots__}
