"""plain_apply: the applies a message writes in its one statement, and the ones it leaves to apply_definition.

Where it plans a write, the write leaves exactly the assignment and event apply_definition leaves (PostgreSQL,
where the turn store applies at once); everything else (a replacement, a new expiry, a refusal) is None.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.records import CustomerDraft, NewSuggestion
from core.tags.assignments import TaggingRules, apply_definition, plain_apply
from core.types import Assignment, AssignmentState, Customer, EventKind, Source, SuggestionStatus
from storage import tables as t
from storage.database import Database
from storage.turns import SqlTurnStore
from tagging.loader import load_taxonomy_text
from tagging.normaliser import name_key
from tagging.policy import find_tag
from tagging.taxonomy import Taxonomy
from tests.tagging.test_regions import REGIONAL

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
CUSTOMER = Customer(7, "上海明远科技")
RULES = TaggingRules()


def _held(*tags: tuple[str, str, datetime | None], count: int | None = None) -> tuple[int, list[Assignment]]:
    """What `assignments.holding` reads: how many tags the customer holds, and the rows near the decision."""
    since = NOW - timedelta(days=2)
    rows = [
        Assignment(n + 1, CUSTOMER.id, d, tag, AssignmentState.ACTIVE, Source.MANUAL, "王丽", since, e)
        for n, (d, tag, e) in enumerate(tags)
    ]
    return (len(rows) if count is None else count), rows


def _plan(taxonomy: Taxonomy, name: str, held: tuple[int, list[Assignment]], **kw: Any) -> Any:
    dimension, tag = find_tag(taxonomy, name)
    return plain_apply(dimension, tag, kw.pop("rules", RULES), kw.pop("customer", CUSTOMER), held,
                       actor="kebiao", source=kw.pop("source", Source.KEYWORD), now=NOW, **kw)


def test_a_new_tag_is_one_row_and_its_added_event_with_the_excerpt_masked(sample_taxonomy: Taxonomy) -> None:
    plan = _plan(sample_taxonomy, "询价客户", _held(), evidence={"excerpt": "报价单发我，手机13800138000"})
    assert plan is not None and plan.added is not None
    row, event = plan.added.assignment, plan.added.event
    assert (row.dimension, row.tag, row.assigned_by, row.assigned_at) == ("stage", "询价客户", "kebiao", NOW)
    assert row.expires_at is not None and row.expires_at > NOW + timedelta(days=89)  # the tag's 90 days
    assert (event.kind, event.tag, event.previous) == (EventKind.ADDED, "询价客户", None)
    assert "13800138000" not in event.evidence["excerpt"]
    assert (plan.change.outcome, plan.change.expires_at) == ("added", row.expires_at)
    assert plan.landed(41).assignment_id == 41
    assert plan.landed(None).outcome == "renewed"  # an active row was there by the time it was written


def test_a_tag_held_without_a_new_expiry_is_renewed_with_nothing_written(sample_taxonomy: Taxonomy) -> None:
    plan = _plan(sample_taxonomy, "活跃客户", _held(("behavior", "活跃客户", None)))
    assert plan is not None and plan.added is None
    assert (plan.change.outcome, plan.change.tag) == ("renewed", "活跃客户")


@pytest.mark.parametrize(
    ("name", "held", "kw"),
    [
        ("询价客户", _held(("stage", "询价客户", NOW + timedelta(days=3))), {}),  # a renewal with a new expiry
        ("VIP客户", _held(("value", "普通客户", None)), {}),  # an exclusive dimension: a replacement
        ("企业客户", _held(count=3), {"rules": TaggingRules(hard_cap=3)}),  # the hard cap: a refusal
    ],
    ids=["new-expiry", "replacement", "hard-cap"],
)
def test_everything_else_is_left_to_apply_definition(
    sample_taxonomy: Taxonomy, name: str, held: tuple[int, list[Assignment]], kw: dict[str, Any]
) -> None:
    assert _plan(sample_taxonomy, name, held, **kw) is None


def test_a_regional_tag_outside_the_customers_region_is_left_to_apply_definition() -> None:
    taxonomy = load_taxonomy_text(REGIONAL)
    assert _plan(taxonomy, "采暖设备意向", _held(), customer=replace(CUSTOMER, region="华北")) is not None
    assert _plan(taxonomy, "采暖设备意向", _held(), customer=replace(CUSTOMER, region="华南")) is None


async def _state(database: Database, customer_id: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    a, e = t.tag_assignments.c, t.tag_events.c
    async with database.engine.connect() as conn:
        held = [
            tuple(r)
            for r in await conn.execute(
                select(a.dimension, a.tag, a.state, a.source, a.assigned_by, a.assigned_at, a.expires_at)
                .where(a.customer_id == customer_id)
                .order_by(a.id)
            )
        ]
        logged = [
            tuple(r)
            for r in await conn.execute(
                select(e.dimension, e.tag, e.kind, e.actor, e.source, e.at, e.evidence, e.previous)
                .where(e.customer_id == customer_id)
                .order_by(e.id)
            )
        ]
    return held, logged


async def test_the_one_statement_leaves_what_apply_definition_leaves(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("a tag is applied with the message's write on PostgreSQL only")
    evidence = {"matched": ["报价"], "excerpt": "报价单发我，手机13800138000", "message_key": "m-1", "score": 0.9}
    async with database.unit_of_work() as uow:
        ids = [(await uow.customers.add(CustomerDraft(name=n), NOW)).id for n in ("王芳", "陈伟")]
        for cid in ids:
            await uow.assignments.insert_active(cid, "behavior", "活跃客户", Source.IMPORT, "import", NOW, None)
    store = SqlTurnStore(database.engine)
    for name in ("询价客户", "活跃客户"):  # an add, and a renewal that changes nothing
        dimension, tag = find_tag(sample_taxonomy, name)
        async with database.unit_of_work() as uow:
            before = await apply_definition(uow, dimension, tag, RULES, ids[0], actor="kebiao",
                                            source=Source.KEYWORD, now=NOW, evidence=evidence)
        async with store.unit_of_work(one_write=True) as uow:
            customer = await uow.customers.get(ids[1])
            assert customer is not None
            held = await uow.assignments.holding(ids[1], dimension.key, name_key(tag.name),
                                                 whole_dimension=dimension.exclusive)
            plan = plain_apply(dimension, tag, RULES, customer, held, actor="kebiao", source=Source.KEYWORD,
                               now=NOW, evidence=evidence)
            assert plan is not None
            row = NewSuggestion(ids[1], f"m-{name}", dimension.key, tag.name, 0.9, {}, NOW,
                                SuggestionStatus.ACCEPTED, True, "kebiao")
            wrote = await uow.write_message(f"m-{name}", [row], None, None, NOW, plan.added)
        after = plan.landed(wrote.applied_id)
        assert (after.outcome, after.tag, after.expires_at) == (before.outcome, before.tag, before.expires_at)
        assert (after.assignment_id is None) == (before.assignment_id is None)
    assert await _state(database, ids[1]) == await _state(database, ids[0])
