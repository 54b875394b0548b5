"""Taxonomy versions (history, rollback, kept assignments) and customer import on both databases."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from core.importing.customers import import_customers
from core.importing.files import CustomerRow, ImportFileError, RowProblem
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules, apply_tag
from core.tags.customers import resolve_customer
from core.taxonomy.store import ensure_taxonomy, import_taxonomy, rollback_taxonomy, taxonomy_history
from core.types import Source
from storage.database import Database
from tagging.taxonomy import Taxonomy

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 4, 1, 10, 0, tzinfo=SHANGHAI)
RULES = TaggingRules(tz=SHANGHAI)


def _without(taxonomy: Taxonomy, dimension: str, tag: str) -> Taxonomy:
    dims = tuple(
        dataclasses.replace(d, tags=tuple(t for t in d.tags if t.name != tag)) if d.key == dimension else d
        for d in taxonomy.dimensions
    )
    return dataclasses.replace(taxonomy, dimensions=dims)


async def test_history_rollback_and_orphans(database: Database, sample_taxonomy: Taxonomy) -> None:
    async with database.unit_of_work() as uow:
        first = await ensure_taxonomy(uow, sample_taxonomy, "admin", NOW)
        assert first.version == 1
        assert (await ensure_taxonomy(uow, sample_taxonomy, "admin", NOW)).version == 1
        cid = (await uow.customers.add(CustomerDraft(name="北京远航"), NOW)).id
        await apply_tag(
            uow, sample_taxonomy, RULES, cid, "沉默客户", actor="a", source=Source.MANUAL, now=NOW
        )
    async with database.unit_of_work() as uow:
        change = await import_taxonomy(uow, _without(sample_taxonomy, "behavior", "沉默客户"), "admin", NOW)
    assert change.version.version == 2
    assert [(o.tag, o.customers) for o in change.orphaned] == [("沉默客户", 1)]
    async with database.unit_of_work() as uow:
        assert len(await uow.assignments.active_for(cid)) == 1  # kept, reported
        back = await rollback_taxonomy(uow, 1, "admin", NOW)
        assert back.version.version == 3 and "rollback to version 1" in back.version.note
        assert back.version.taxonomy.dimensions == dataclasses.replace(sample_taxonomy, version=3).dimensions
        assert [v.version for v in await taxonomy_history(uow)] == [3, 2, 1]
        current = await uow.taxonomies.current()
        assert current is not None and current.version == 3
        with pytest.raises(LookupError, match="known versions"):
            await rollback_taxonomy(uow, 42, "admin", NOW)


def _rows() -> list[CustomerRow]:
    return [
        CustomerRow(row=2, name="上海明远科技", company="明远", crm_id="C-1", tags=("VIP客户", "询价客户")),
        CustomerRow(row=3, name="杭州云栖", wecom_external_userid="wmAbc", region="华东", tags=("企业客户",)),
        CustomerRow(
            row=4,
            name="深圳华强",
            company="华强",
            contract_end=date(2025, 12, 31),
            attributes={"行业": "制造"},
        ),
    ]


async def test_import_is_idempotent(database: Database, sample_taxonomy: Taxonomy) -> None:
    first = await import_customers(database, sample_taxonomy, RULES, _rows(), actor="admin", now=NOW)
    assert (first.created, first.updated, first.unchanged, first.tags_applied) == (3, 0, 0, 3)
    second = await import_customers(database, sample_taxonomy, RULES, _rows(), actor="admin", now=NOW)
    assert (second.created, second.updated, second.unchanged, second.tags_applied) == (0, 0, 3, 0)
    changed = [dataclasses.replace(_rows()[0], region="华东")]
    third = await import_customers(database, sample_taxonomy, RULES, changed, actor="admin", now=NOW)
    assert third.updated == 1
    async with database.unit_of_work() as uow:
        (customer,) = await uow.customers.find_exact("C-1")
        assert customer.region == "华东" and customer.company == "明远"
        assert len(await uow.events.for_customer(customer.id, 0, 50)) == 2


async def test_import_all_or_nothing(database: Database, sample_taxonomy: Taxonomy) -> None:
    rows = [*_rows(), CustomerRow(row=5, name="坏行公司", tags=("VIP客户", "普通客户", "不存在标签"))]
    with pytest.raises(ImportFileError) as info:
        await import_customers(database, sample_taxonomy, RULES, rows, actor="admin", now=NOW)
    text = [str(p) for p in info.value.problems]
    assert any(p.startswith("row 5, column tags: unknown tag '不存在标签'") for p in text)
    assert any("exclusive" in p for p in text)
    async with database.unit_of_work() as uow:
        assert await uow.customers.find_exact("上海明远科技") == []


async def test_import_duplicate_identity_and_dry_run(database: Database, sample_taxonomy: Taxonomy) -> None:
    twice = [_rows()[0], dataclasses.replace(_rows()[0], row=9)]
    with pytest.raises(ImportFileError, match="row 9, column crm_id: same customer as row 2"):
        await import_customers(database, sample_taxonomy, RULES, twice, actor="admin", now=NOW)
    summary = await import_customers(database, sample_taxonomy, RULES, _rows(), actor="admin", now=NOW, dry_run=True)
    assert summary.created == 3 and "dry run" in str(summary)
    async with database.unit_of_work() as uow:
        assert await uow.customers.find_exact("杭州云栖") == []


async def test_import_matches_by_name_when_the_row_has_no_company(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    async with database.unit_of_work() as uow:
        stored = await uow.customers.add(CustomerDraft(name="杭州云帆科技", company="杭州云帆科技有限公司"), NOW)
    rows = [CustomerRow(row=2, name="杭州雲帆科技 ", region="华东")]  # traditional 雲, trailing space
    first = await import_customers(database, sample_taxonomy, RULES, rows, actor="admin", now=NOW)
    assert (first.created, first.updated) == (0, 1)
    again = await import_customers(database, sample_taxonomy, RULES, rows, actor="admin", now=NOW)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
    async with database.unit_of_work() as uow:
        [only] = await uow.customers.find_by_name_key("杭州云帆科技", 10)
    assert only.id == stored.id and only.company == "杭州云帆科技有限公司" and only.region == "华东"


async def test_import_narrows_by_company_and_refuses_ambiguous_names(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    async with database.unit_of_work() as uow:
        north = await uow.customers.add(CustomerDraft(name="华兴贸易", company="北京华兴贸易有限公司"), NOW)
        south = await uow.customers.add(CustomerDraft(name="华兴贸易", company="广州华兴贸易有限公司"), NOW)
    narrowed = [CustomerRow(row=2, name="华兴贸易", company="广州华兴贸易有限公司", region="华南")]
    summary = await import_customers(database, sample_taxonomy, RULES, narrowed, actor="admin", now=NOW)
    assert (summary.created, summary.updated) == (0, 1)
    async with database.unit_of_work() as uow:
        refreshed = await uow.customers.get(south.id)
        assert refreshed is not None and refreshed.region == "华南"
    ambiguous = [CustomerRow(row=2, name="新客户"), CustomerRow(row=3, name="华兴贸易", owner="u-li")]
    with pytest.raises(ImportFileError) as info:
        await import_customers(database, sample_taxonomy, RULES, ambiguous, actor="admin", now=NOW)
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith("row 3, column name: '华兴贸易' matches 2 customers")
    assert f"id {north.id}" in problem and f"id {south.id}" in problem and "add a crm_id" in problem
    async with database.unit_of_work() as uow:
        assert await uow.customers.find_exact("新客户") == []  # all-or-nothing


async def test_forgiving_lookup_finds_customers_by_company_after_names(database: Database) -> None:
    async with database.unit_of_work() as uow:
        by_company = await uow.customers.add(CustomerDraft(name="王经理", company="宁波海天机械有限公司"), NOW)
        by_name = await uow.customers.add(CustomerDraft(name="海天机械宁波分部"), NOW)
        await uow.customers.add(CustomerDraft(name="李总", company="苏州园林设计"), NOW)
    async with database.unit_of_work() as uow:
        found = await uow.customers.find_by_name_key("海天机械", 10)
        assert [c.id for c in found] == [by_name.id, by_company.id]
        resolved = await resolve_customer(uow, "宁波海天机械有限公司")
    assert resolved.customer is not None and resolved.customer.id == by_company.id


async def test_import_merges_reader_problems_sorted_and_writes_nothing(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    rows = [
        CustomerRow(row=2, name="苏州工业园", tags=("VIP客户",)),
        CustomerRow(row=4, name="无锡太湖", tags=("不存在标签",)),
    ]
    reader = [
        RowProblem(5, "company", "cell holds a formula; paste values instead of formulas"),
        RowProblem(3, "contract_end", "'2025-02-30' is not a date (use YYYY-MM-DD)"),
    ]
    with pytest.raises(ImportFileError) as info:
        await import_customers(database, sample_taxonomy, RULES, rows, actor="admin", now=NOW, problems=reader)
    assert [(p.row, p.column) for p in info.value.problems] == [(3, "contract_end"), (4, "tags"), (5, "company")]
    async with database.unit_of_work() as uow:
        assert await uow.customers.find_exact("苏州工业园") == []
