"""Churn scoring looks only at candidates selected by index, and misses no customer a full scan would flag."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from core.alerts.jobs import AlertJobs, score_churn
from core.alerts.selection import (
    CHURN_TAG,
    ChurnRules,
    ChurnWeights,
    CustomerFacts,
    HeldTag,
    churn_seeds,
    is_at_risk,
    score_customer,
)
from core.records import CustomerDraft
from core.types import Source
from storage import tables as t
from storage.database import Database
from storage.outbox import SqlAlertStore
from tagging.builtin import load_builtin

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)
TAGS = ("售后工单", "紧急工单", "竞品对比", "续费意向", CHURN_TAG, "询价客户")
weights = st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.4, 0.5, 0.6, 0.8, 1.0])


@st.composite
def facts_and_rules(draw: st.DrawFn) -> tuple[CustomerFacts, ChurnRules]:
    """Any customer and any rule settings a deployment may configure."""
    days = st.integers(min_value=-400, max_value=400)
    held = draw(st.lists(st.tuples(st.sampled_from(TAGS), days), max_size=4))
    facts = CustomerFacts(
        customer_id=1,
        name="客户",
        owner="",
        region="",
        contract_end=draw(st.none() | days.map(lambda d: NOW.date() + timedelta(days=d))),
        created_at=NOW - timedelta(days=draw(st.integers(min_value=0, max_value=900))),
        last_contact_at=draw(st.none() | days.map(lambda d: NOW - timedelta(days=abs(d)))),
        watched_tags=tuple(HeldTag(tag, NOW - timedelta(days=abs(d))) for tag, d in held),
        negative_suggestions=draw(st.integers(min_value=0, max_value=3)),
        agent_removed_at=draw(st.none() | days.map(lambda d: NOW - timedelta(days=abs(d)))),
    )
    signals = ("contract_end", "silence", "risk_tags", "negative", "agent_deleted")
    rules = ChurnRules(
        weights=ChurnWeights.of((s, draw(weights)) for s in signals),
        threshold=draw(st.sampled_from([0.0, 0.2, 0.3, 0.5, 0.6, 0.9, 1.0])),
        contract_days=draw(st.integers(min_value=0, max_value=90)),
        silence_days=draw(st.integers(min_value=0, max_value=90)),
        recent_days=draw(st.integers(min_value=1, max_value=90)),
        negative_min=draw(st.integers(min_value=0, max_value=2)),
    )
    return facts, rules


@settings(max_examples=400, deadline=None)
@given(facts_and_rules())
def test_every_customer_at_risk_or_holding_the_tag_meets_the_candidate_bounds(
    case: tuple[CustomerFacts, ChurnRules],
) -> None:
    facts, rules = case
    assessment = score_customer(facts, rules, NOW, SH)
    if is_at_risk(assessment, rules) or assessment.already_tagged:
        assert churn_seeds(rules, NOW, SH).admits(facts)


def test_silence_that_reaches_the_threshold_alone_makes_everyone_a_candidate() -> None:
    loud = ChurnRules(weights=ChurnWeights.of([("silence", 0.7)]), threshold=0.6)
    assert churn_seeds(loud, NOW, SH).everyone
    assert not churn_seeds(ChurnRules(), NOW, SH).everyone  # silence 0.2 < 0.6: it needs another signal


async def _seed(database: Database, rng: random.Random) -> list[int]:
    """Customers with every mix of contract ends, recent and old risk tags, 高危流失, negative suggestions,
    agent removals and messages."""
    today = NOW.astimezone(SH).date()
    ids: list[int] = []
    store = SqlAlertStore(database.engine)
    async with store.unit_of_work() as uow:
        for i in range(60):
            contract: date | None = today + timedelta(days=rng.randint(-60, 120)) if rng.random() < 0.5 else None
            created = NOW - timedelta(days=rng.randint(0, 200))
            cid = (
                await uow.customers.add(CustomerDraft(f"客户{i:03d}", owner="小张", contract_end=contract), created)
            ).id
            ids.append(cid)
            for tag in rng.sample(TAGS, rng.randint(0, 3)):
                at = NOW - timedelta(days=rng.randint(0, 80))
                await uow.assignments.insert_active(cid, "risk", tag, Source.RULE, "kebiao", at, None)
            if rng.random() < 0.3:
                await uow.activity.record_message(cid, "wecom", NOW - timedelta(days=rng.randint(0, 60)))
            if rng.random() < 0.15:
                await uow.activity.record_agent_removed(cid, "小张", NOW - timedelta(days=rng.randint(0, 60)))
    async with database.engine.begin() as conn:
        rows = [
            {
                "customer_id": cid,
                "message_key": f"m-{cid}-{k}",
                "dimension": rng.choice(["risk", "stage"]),
                "tag_key": "投诉风险",
                "tag": "投诉风险",
                "score": 0.9,
                "evidence": {},
                "status": rng.choice(["pending", "accepted", "rejected"]),
                "auto_applied": False,
                "created_at": NOW - timedelta(days=rng.randint(0, 60)),
            }
            for cid in rng.sample(ids, 15)
            for k in range(rng.randint(1, 2))
        ]
        await conn.execute(t.suggestions.insert(), rows)
    return ids


async def test_candidates_are_exactly_the_customers_meeting_the_bounds(database: Database) -> None:
    await _seed(database, random.Random(5))
    rules = ChurnRules()
    seeds = churn_seeds(rules, NOW, SH)
    store = SqlAlertStore(database.engine)
    since = NOW - timedelta(days=rules.recent_days)
    async with store.unit_of_work() as uow:
        everyone = await uow.scans.customer_facts(0, since, rules.watched_tags, rules.negative_dimension, 10_000)
        candidates = await uow.scans.churn_candidates(seeds)
        again = await uow.scans.facts_for(candidates, since, rules.watched_tags, rules.negative_dimension)
    admitted = [f.customer_id for f in everyone if seeds.admits(f)]
    assert candidates == admitted and 5 < len(candidates) < len(everyone)
    assert again == [f for f in everyone if f.customer_id in set(candidates)]


async def test_scoring_candidates_flags_the_same_customers_as_scoring_everyone(database: Database) -> None:
    await _seed(database, random.Random(11))
    rules = ChurnRules()
    store = SqlAlertStore(database.engine)
    since = NOW - timedelta(days=rules.recent_days)
    async with store.unit_of_work() as uow:
        everyone = await uow.scans.customer_facts(0, since, rules.watched_tags, rules.negative_dimension, 10_000)
    flagged = [a for a in (score_customer(f, rules, NOW, SH) for f in everyone) if is_at_risk(a, rules)]
    taxonomy = load_builtin()
    report = await score_churn(AlertJobs(store=store, taxonomy=lambda: taxonomy, deliverers={}, tz=SH), NOW)
    assert report.at_risk == len(flagged) > 0
    assert report.scored < len(everyone)  # not a walk over every customer
