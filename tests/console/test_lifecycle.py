"""Retire and merge on SQLite and PostgreSQL: new version, archive entry, holders moved, history kept."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.records import CustomerDraft
from core.tags.assignments import TaggingRules, apply_tag
from core.tags.customers import customer_history
from core.tags.summary import customer_summary
from core.taxonomy.lifecycle import LifecycleError, merge_tags, retire_tag
from core.taxonomy.store import import_taxonomy
from core.types import Role, Source, User
from storage.console import ConsoleStore
from storage.database import Database
from tagging.matcher import Matcher
from tagging.taxonomy import Taxonomy

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MANAGER = User("m-1", Role.MANAGER)


async def _seed(database: Database, taxonomy: Taxonomy) -> tuple[ConsoleStore, list[int]]:
    store = ConsoleStore(database.engine)
    ids = []
    async with store.unit_of_work() as uow:
        await import_taxonomy(uow, taxonomy, "test", NOW)
        for i in range(3):
            ids.append((await uow.customers.add(CustomerDraft(name=f"客户{i}"), NOW)).id)
        rules = TaggingRules()
        for cid in ids:
            await apply_tag(uow, taxonomy, rules, cid, "询价客户", actor="a", source=Source.MANUAL, now=NOW)
        await apply_tag(uow, taxonomy, rules, ids[0], "紧急工单", actor="a", source=Source.MANUAL, now=NOW)
    return store, ids


async def test_merge_moves_holders_keywords_and_records_history(database: Database, sample_taxonomy: Taxonomy) -> None:
    store, ids = await _seed(database, sample_taxonomy)
    async with store.unit_of_work() as uow:
        result = await merge_tags(uow, "stage", "询价客户", "紧急工单", "m-1", NOW)
    assert (result.moved, result.ended) == (2, 1)
    async with store.unit_of_work(read_only=True) as uow:
        current = await uow.taxonomies.current()
        assert current is not None and current.version == result.version.version
        names = [t.name for t in current.taxonomy.iter_tags()]
        assert "询价客户" not in names
        merged = next(t for t in current.taxonomy.iter_tags() if t.name == "紧急工单")
        assert {"报价", "询价", "多少钱", "投诉"} <= set(merged.keywords)
        for cid in ids:
            summary = await customer_summary(uow, current.taxonomy, cid, MANAGER, NOW)
            held = [t.name for g in summary.groups for t in g.tags]
            assert held == ["紧急工单"], held
        events = await customer_history(uow, current.taxonomy, ids[1], MANAGER)
        assert events[0].tag == "紧急工单" and events[0].previous == "询价客户" and events[0].actor == "m-1"
        assert events[-1].tag == "询价客户"  # the earlier history stays
        archive = await uow.tag_archive.entries(10)
    assert archive[0].kind == "merged" and archive[0].merged_into == "紧急工单" and archive[0].actor == "m-1"
    suggestions = Matcher.build(current.taxonomy).suggest("请给我报价")
    assert [s.tag for s in suggestions] == ["紧急工单"]


async def test_retire_stops_matching_and_keeps_holders(database: Database, sample_taxonomy: Taxonomy) -> None:
    store, ids = await _seed(database, sample_taxonomy)
    async with store.unit_of_work() as uow:
        result = await retire_tag(uow, "stage", "询价客户", "m-1", NOW)
    async with store.unit_of_work(read_only=True) as uow:
        assert result.version.note == "retire stage/询价客户"
        summary = await customer_summary(uow, result.version.taxonomy, ids[0], MANAGER, NOW)
        views = {t.name: t for g in summary.groups for t in g.tags}
        assert views["询价客户"].retired and not views["紧急工单"].retired
        archive = await uow.tag_archive.entries(10)
    assert archive[0].kind == "retired" and archive[0].holders == 3 and archive[0].definition["keywords"]
    assert Matcher.build(result.version.taxonomy).suggest("请给我报价") == []


@pytest.mark.parametrize(
    ("dimension", "source", "target", "message"),
    [
        ("stage", "询价客户", "询价客户", "two different"),
        ("stage", "不存在", "紧急工单", "is not in dimension"),
        ("basic", "华东", "企业客户", "has sub-tags"),
    ],
)
async def test_merge_refusals_change_nothing(
    database: Database, sample_taxonomy: Taxonomy, dimension: str, source: str, target: str, message: str
) -> None:
    store, _ = await _seed(database, sample_taxonomy)
    with pytest.raises(LifecycleError, match=message):
        async with store.unit_of_work() as uow:
            await merge_tags(uow, dimension, source, target, "m-1", NOW)
    async with store.unit_of_work(read_only=True) as uow:
        assert len(await uow.taxonomies.history()) == 1
        assert await uow.tag_archive.entries(5) == []
