"""apply_many (set-based) leaves exactly the assignments and events apply_definition (one by one) leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import NotFoundError
from core.records import CustomerDraft
from core.tags.assignments import ApplyItem, TagChange, TaggingRules, apply_definition, apply_many
from core.types import Source
from storage.database import Database, open_database
from tagging.policy import PolicyRefusal, find_tag
from tagging.taxonomy import Taxonomy

NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def _script(taxonomy: Taxonomy, ids: list[int]) -> list[ApplyItem]:
    """A sequence covering add, renew (today tag, ttl tag), exclusive replacement chains, re-add, cap refusal."""

    def item(n: int, name: str, minutes: int, **evidence: Any) -> ApplyItem:
        dimension, tag = find_tag(taxonomy, name)
        return ApplyItem(ids[n], dimension, tag, NOW + timedelta(minutes=minutes), evidence or {"n": minutes})

    return [
        item(0, "询价客户", 0, excerpt="报价单发我，手机13800138000"),
        item(0, "普通客户", 1),
        item(0, "VIP客户", 2),  # replaces 普通客户 inserted earlier in the same batch
        item(0, "询价客户", 3),  # renew: ttl tag, new expiry
        item(0, "今日已联系", 4),
        item(0, "今日已联系", 5),  # same local day: same expiry, renewed without an event
        item(0, "今日已联系", 60 * 15),  # after local midnight: new expiry, renewed event
        item(1, "潜在客户", 6),  # replaces the stored 普通客户
        item(1, "普通客户", 7),  # and back again
        item(1, "活跃客户", 8),
        item(1, "活跃客户", 9),  # no ttl: renewed, nothing written
        item(2, "企业客户", 10),
        item(2, "华东", 11),  # hard cap 3 for this run: customer 2 already holds 2 tags
        item(2, "上海", 12),  # refused
    ]


async def _seed(database: Database) -> list[int]:
    """Three customers; 王芳 holds nothing, 陈伟 holds 普通客户, 赵磊 holds 活跃客户."""
    async with database.unit_of_work() as uow:
        ids = [(await uow.customers.add(CustomerDraft(name=n), NOW)).id for n in ("王芳", "陈伟", "赵磊")]
        for cid, tag in ((ids[1], "普通客户"), (ids[2], "活跃客户")):
            dim = "value" if tag == "普通客户" else "behavior"
            await uow.assignments.insert_active(cid, dim, tag, Source.IMPORT, "import", NOW - timedelta(days=1), None)
    return ids


async def _state(database: Database, ids: list[int]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every assignment (active or not) and event, ids and customer ids made relative."""
    from sqlalchemy import select

    from storage import tables as t

    async with database.engine.connect() as conn:
        a = t.tag_assignments.c
        rows = await conn.execute(
            select(a.customer_id, a.dimension, a.tag, a.state, a.source, a.assigned_at, a.expires_at, a.ended_at)
            .order_by(a.id)
        )
        assignments = [(ids.index(r[0]), *r[1:]) for r in rows]
        e = t.tag_events.c
        rows = await conn.execute(
            select(e.customer_id, e.dimension, e.tag, e.kind, e.actor, e.source, e.at, e.evidence, e.previous)
            .order_by(e.id)
        )
        events = [(ids.index(r[0]), *r[1:]) for r in rows]
    return assignments, events


async def test_bulk_and_single_paths_agree(database: Database, sample_taxonomy: Taxonomy, tmp_path: Any) -> None:
    rules = TaggingRules(hard_cap=3)
    one_by_one = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'single.db'}")
    try:
        single_ids = await _seed(one_by_one)
        single: list[TagChange | PolicyRefusal] = []
        async with one_by_one.unit_of_work() as uow:
            for it in _script(sample_taxonomy, single_ids):
                try:
                    single.append(
                        await apply_definition(
                            uow, it.dimension, it.tag, rules, it.customer_id,
                            actor="kebiao", source=Source.KEYWORD, now=it.at, evidence=it.evidence,
                        )
                    )  # fmt: skip
                except PolicyRefusal as refusal:
                    single.append(refusal)
        expected = await _state(one_by_one, single_ids)
    finally:
        await one_by_one.close()

    bulk_ids = await _seed(database)
    async with database.unit_of_work() as uow:
        bulk = await apply_many(uow, _script(sample_taxonomy, bulk_ids), rules, actor="kebiao", source=Source.KEYWORD)
    got = await _state(database, bulk_ids)

    assert got == expected
    assert [_comparable(o, single_ids) for o in single] == [_comparable(o, bulk_ids) for o in bulk]
    outcomes = [o.outcome if isinstance(o, TagChange) else "refused" for o in bulk]
    assert outcomes.count("refused") == 1 and outcomes[2] == "added"
    assert isinstance(bulk[2], TagChange) and bulk[2].replaced == ("普通客户",)
    assert "13800138000" not in str(got[1])  # evidence is masked on the bulk path too


def _comparable(outcome: TagChange | PolicyRefusal, ids: list[int]) -> Any:
    if isinstance(outcome, PolicyRefusal):
        return outcome.reason
    return (ids.index(outcome.customer_id), outcome.dimension, outcome.tag, outcome.outcome, outcome.replaced,
            outcome.expires_at, outcome.warnings)  # fmt: skip


async def test_unknown_customer_writes_nothing(database: Database, sample_taxonomy: Taxonomy) -> None:
    ids = await _seed(database)
    dimension, tag = find_tag(sample_taxonomy, "VIP客户")
    items = [ApplyItem(ids[0], dimension, tag, NOW), ApplyItem(ids[-1] + 99, dimension, tag, NOW)]
    with pytest.raises(NotFoundError, match=str(ids[-1] + 99)):
        async with database.unit_of_work() as uow:
            await apply_many(uow, items, TaggingRules(), actor="kebiao", source=Source.KEYWORD)
    async with database.unit_of_work() as uow:
        assert await uow.assignments.active_for(ids[0]) == []
