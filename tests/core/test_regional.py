"""Regional tag libraries on SQLite and PostgreSQL: applying, suggesting, showing, importing, and who may edit."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from core.errors import NotAllowedError
from core.importing.customers import plan_import
from core.importing.files import CustomerRow
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules, apply_tag
from core.tags.suggestions import suggest_for_message
from core.tags.summary import customer_summary
from core.tags.users import set_role
from core.taxonomy.regional import RegionalEditError, outside_regions
from core.taxonomy.store import import_taxonomy
from core.types import Role, Source, User
from storage.database import Database
from tagging.loader import load_taxonomy_text
from tagging.matcher import Matcher
from tagging.policy import PolicyRefusal
from tests.tagging.test_regions import REGIONAL

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
RULES = TaggingRules(tz=ZoneInfo("Asia/Shanghai"), hard_cap=100)
TAXONOMY = load_taxonomy_text(REGIONAL)


async def _customers(db: Database) -> tuple[int, int]:
    async with db.unit_of_work() as uow:
        north = await uow.customers.add(CustomerDraft(name="北京暖通", region="华北"), NOW)
        east = await uow.customers.add(CustomerDraft(name="上海楼宇", region="华东"), NOW)
    return north.id, east.id


async def test_regional_tags_apply_and_suggest_only_in_their_region(database: Database) -> None:
    north, east = await _customers(database)
    async with database.unit_of_work() as uow:
        await apply_tag(uow, TAXONOMY, RULES, north, "地暖", actor="a", source=Source.MANUAL, now=NOW)
    with pytest.raises(PolicyRefusal, match="only for customers of 华北"):
        async with database.unit_of_work() as uow:
            await apply_tag(uow, TAXONOMY, RULES, east, "采暖设备意向", actor="a", source=Source.MANUAL, now=NOW)
    matcher = Matcher.build(TAXONOMY)
    text = "想了解地暖的报价"
    async with database.unit_of_work() as uow:
        for_north = await suggest_for_message(uow, matcher, TAXONOMY, RULES, north, "m-north", text, NOW)
        for_east = await suggest_for_message(uow, matcher, TAXONOMY, RULES, east, "m-east", text, NOW)
    assert {s.tag for s in for_north.pending} == {"地暖", "询价客户"}
    assert {s.tag for s in for_east.pending} == {"询价客户"}


async def test_a_tag_left_after_a_region_change_is_shown_to_managers_only(database: Database) -> None:
    north, _ = await _customers(database)
    async with database.unit_of_work() as uow:
        await apply_tag(uow, TAXONOMY, RULES, north, "采暖设备意向", actor="a", source=Source.MANUAL, now=NOW)
        customer = await uow.customers.get(north)
        assert customer is not None
        await uow.customers.update(north, CustomerDraft(name=customer.name, region="华南"), NOW)
    async with database.unit_of_work(read_only=True) as uow:
        agent = await customer_summary(uow, TAXONOMY, north, User("a", Role.AGENT), NOW)
        manager = await customer_summary(uow, TAXONOMY, north, User("m", Role.MANAGER), NOW)
    assert agent.count == 0 and agent.groups == ()
    assert [t.name for g in manager.groups for t in g.tags] == ["采暖设备意向"]


async def test_import_refuses_a_regional_tag_for_another_region(database: Database) -> None:
    rows = [
        CustomerRow(row=2, name="天津热力", region="华北", tags=("采暖设备意向",)),
        CustomerRow(row=3, name="广州商场", region="华南", tags=("采暖设备意向",)),
    ]
    async with database.unit_of_work(read_only=True) as uow:
        plan = await plan_import(uow, TAXONOMY, RULES, rows, now=NOW)
    assert [(p.row, p.column) for p in plan.problems] == [(3, "tags")]
    assert "only for customers of 华北" in plan.problems[0].reason


def _edited(old: str, new: str) -> object:
    text = REGIONAL.replace(old, new, 1)
    assert text != REGIONAL
    return load_taxonomy_text(text)


async def test_a_regional_manager_edits_only_their_regions_part(database: Database) -> None:
    async with database.unit_of_work() as uow:
        await import_taxonomy(uow, TAXONOMY, "cli", NOW)
        await set_role(uow, "north-mgr", Role.MANAGER, ("华北",), NOW)
        await set_role(uow, "east-mgr", Role.MANAGER, ("华东",), NOW)
        await set_role(uow, "head", Role.MANAGER, (), NOW)
    inside = _edited("keywords: [保供]", "keywords: [保供, 供暖保障]")
    outside = _edited("keywords: [报价]", "keywords: [报价, 价格]")
    widen = _edited("regions: [华北]\n        keywords", "regions: [华北, 华东]\n        keywords")
    async with database.unit_of_work() as uow:
        done = await import_taxonomy(uow, inside, "north-mgr", NOW)  # type: ignore[arg-type]
    assert done.changed
    for actor, draft, part in [
        ("north-mgr", outside, "tag 询价客户 in need (scope: all regions)"),
        ("north-mgr", widen, "tag 采暖设备意向 in need (scope: 华北 / 华北, 华东)"),
        ("east-mgr", _edited("keywords: [地暖]", "keywords: [地暖, 地热]"), "tag 地暖 in need (scope: 华北)"),
    ]:
        with pytest.raises(RegionalEditError) as caught:
            async with database.unit_of_work() as uow:
                await import_taxonomy(uow, draft, actor, NOW)  # type: ignore[arg-type]
        assert part in str(caught.value) and "you may change only dimensions and tags scoped to" in str(caught.value)
        assert isinstance(caught.value, NotAllowedError)
    async with database.unit_of_work() as uow:  # nothing was stored by the refusals; others edit anything
        assert (await uow.taxonomies.current()).version == done.version.version  # type: ignore[union-attr]
        assert (await import_taxonomy(uow, outside, "head", NOW)).changed  # type: ignore[arg-type]


def test_outside_regions_lists_every_part() -> None:
    changed = load_taxonomy_text(
        REGIONAL.replace("regions: [华北, 华东, 华南]", "regions: [华北, 华东, 华南, 西北]").replace(
            "name: 华北专项", "name: 北方专项"
        )
    )
    assert outside_regions(TAXONOMY, changed, ("华北",)) == ["the regions list"]
    assert outside_regions(TAXONOMY, changed, ("华东",)) == [
        "the regions list",
        "dimension north (scope: 华北)",
    ]
