"""Re-importing customers updates them set-based: changed fields, mixed files, duplicates and racing writers."""

from __future__ import annotations

from datetime import date, datetime
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event

from core.importing.customers import import_customers
from core.importing.files import CustomerRow, ImportFileError
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules
from storage.database import Database
from tagging.taxonomy import Taxonomy
from tests.core.test_import_scale import _Racing

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 4, 1, 10, 0, tzinfo=SHANGHAI)
LATER = datetime(2025, 5, 1, 10, 0, tzinfo=SHANGHAI)
RULES = TaggingRules(tz=SHANGHAI)


def _row(i: int, **changes: Any) -> CustomerRow:
    values: dict[str, Any] = {
        "row": i + 2,
        "name": f"客户{i:05d}",
        "company": f"公司{i % 7}",
        "region": "华东",
        "crm_id": f"C-{i:05d}",
        "contract_end": date(2026, 3, 31),
        "attributes": MappingProxyType({"tier": "t1", "source": "展会"}),
    }
    return CustomerRow(**{**values, **changes})


async def test_a_re_import_changes_the_fields_it_gives_and_keeps_the_empty_ones(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    first = await import_customers(database, sample_taxonomy, RULES, [_row(i) for i in range(1500)], actor="a", now=NOW)
    assert first.created == 1500
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()[:2]).upper())

    changed = [
        _row(
            i,
            name=f"新客户{i:05d}",
            company=None,  # an empty cell keeps what is stored
            region="华南",
            wecom_external_userid=f"wm-{i}",
            contract_end=date(2027, 6, 30),
            attributes=MappingProxyType({"tier": "t9"}),  # merged over the stored attributes
        )
        for i in range(1200)
    ]
    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        again = await import_customers(
            database, sample_taxonomy, RULES, [*changed, *(_row(i) for i in range(1200, 1500))], actor="a", now=LATER
        )
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    assert (again.created, again.updated, again.unchanged) == (0, 1200, 300)
    assert statements.count("UPDATE CUSTOMERS") == 1, statements  # one statement for every changed customer
    async with database.unit_of_work(read_only=True) as uow:
        [one] = await uow.customers.find_exact("C-00007")
        assert (one.name, one.company, one.region) == ("新客户00007", "公司0", "华南")
        assert one.wecom_external_userid == "wm-7"
        assert one.contract_end == date(2027, 6, 30)
        assert dict(one.attributes) == {"tier": "t9", "source": "展会"}
        assert [c.id for c in await uow.customers.find_exact("wm-7")] == [one.id]
        assert await uow.customers.find_by_name_key("新客户00007", 5) == [one]
        [kept] = await uow.customers.find_exact("C-01300")
        assert (kept.name, kept.region, kept.contract_end) == ("客户01300", "华东", date(2026, 3, 31))
    repeat = await import_customers(database, sample_taxonomy, RULES, changed, actor="a", now=LATER)
    assert (repeat.updated, repeat.unchanged) == (0, 1200)  # the same file again changes nothing


async def test_a_mixed_file_creates_the_new_rows_and_updates_the_stored_ones(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    await import_customers(database, sample_taxonomy, RULES, [_row(i) for i in range(0, 600, 2)], actor="a", now=NOW)
    mixed = [_row(i, region="华北", tags=("VIP客户",)) for i in range(600)]
    summary = await import_customers(database, sample_taxonomy, RULES, mixed, actor="a", now=LATER)
    assert (summary.created, summary.updated, summary.unchanged, summary.tags_applied) == (300, 300, 0, 600)
    async with database.unit_of_work(read_only=True) as uow:
        for crm_id in ("C-00010", "C-00011"):
            [customer] = await uow.customers.find_exact(crm_id)
            assert customer.region == "华北"
            assert [a.tag for a in await uow.assignments.active_for(customer.id)] == ["VIP客户"]


async def test_a_file_repeating_a_customer_is_refused_whole(database: Database, sample_taxonomy: Taxonomy) -> None:
    await import_customers(database, sample_taxonomy, RULES, [_row(i) for i in range(50)], actor="a", now=NOW)
    rows = [*(_row(i, region="华南") for i in range(60)), _row(30, name="别名", row=80), _row(70, row=81)]
    with pytest.raises(ImportFileError) as refused:
        await import_customers(database, sample_taxonomy, RULES, rows, actor="a", now=LATER)
    [problem] = refused.value.problems
    assert (problem.row, problem.column) == (80, "crm_id") and "same customer as row 32" in problem.reason
    async with database.unit_of_work(read_only=True) as uow:
        [stored] = await uow.customers.find_exact("C-00030")
        assert (stored.name, stored.region) == ("客户00030", "华东")  # no update was written
        assert await uow.customers.find_exact("C-00055") == []  # nor any new row


async def test_a_wecom_id_another_writer_stores_meanwhile_is_a_row_problem(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    await import_customers(database, sample_taxonomy, RULES, [_row(i) for i in range(20)], actor="a", now=NOW)

    async def another_writer() -> None:
        async with database.unit_of_work() as uow:
            if not await uow.customers.find_exact("wm-taken"):
                await uow.customers.add(CustomerDraft(name="企业微信来的客户", wecom_external_userid="wm-taken"), NOW)

    rows = [_row(i, region="华南") for i in range(20)]
    rows[5] = _row(5, wecom_external_userid="wm-taken")  # an update giving a stored customer a new WeCom id
    with pytest.raises(ImportFileError) as refused:
        await import_customers(_Racing(database, another_writer), sample_taxonomy, RULES, rows, actor="a", now=LATER)
    [problem] = refused.value.problems
    assert problem.column == "wecom_external_userid" and "while the file was being checked" in problem.reason
    if database.engine.dialect.name == "postgresql":  # PostgreSQL names the value, so the row is found
        assert problem.row == 7 and "'wm-taken'" in problem.reason
    async with database.unit_of_work(read_only=True) as uow:
        [other] = await uow.customers.find_exact("wm-taken")
        assert other.name == "企业微信来的客户"
        [kept] = await uow.customers.find_exact("C-00004")
        assert kept.region == "华东"  # nothing of the file was written
