"""Rules at scale: `python -m bench rules [--customers N] [--events M] [--ingest K] [--postgres URL] [--no-sqlite]`.

Generates customers (with birthday / 累计消费 attributes) and customer events (purchase, click, login over 120 days;
COPY on PostgreSQL, executemany on SQLite; generation time printed apart), then measures on each database:

1. "more than 3 purchases in 30 days": the rule engine's set-based evaluation (one GROUP BY … HAVING selects the
   customers over the threshold with their counts, then the rest of their facts one page at a time and the rule's
   own condition on them) against ONE hand-written SQL statement computing the same customer set on the same
   database; the two sets must be equal. Then the rule run with its writes (tags + events through the tagging
   policy) against one hand-written INSERT … SELECT adding the same tags.
2. Every built-in daily rule (run_daily on the built-in taxonomy): seconds and peak-RSS growth (memory stays flat:
   one page of facts at a time).
3. Event ingest with the real-time event rules: K new events in batches of 5,000 lines (parse + resolve + store +
   event rules), events per second.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from bench.alerts import _bulk, _peak_rss_kib, _reset_peak_rss, _rss_kib
from bench.scratch import scratch_postgres
from core.rules.engine import evaluate
from core.rules.events import parse_events
from core.rules.ingest import ingest_events
from core.rules.service import RuleContext, daily_pages, gather, run_daily
from core.taxonomy.store import ensure_taxonomy
from storage.database import open_database
from storage.rules import SqlRulesStore
from tagging.builtin import load_builtin
from tagging.rules import RuleSet
from tagging.taxonomy import Taxonomy

KINDS = ("purchase", "purchase", "click", "login")
BATCH = 5_000
Row = tuple[Any, ...]


def _customers(count: int, now: datetime, sqlite: bool) -> Iterator[Row]:
    rng = random.Random(11)
    for i in range(count):
        contract_end = (now + timedelta(days=rng.randint(-10, 400))).date() if i % 3 else None
        created = now - timedelta(days=rng.randint(1, 500))
        attrs = {
            "birthday": f"19{rng.randint(50, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "累计消费": str(rng.randint(0, 20000)),
        }
        attributes = json.dumps(attrs, ensure_ascii=False)
        yield (
            i + 1,
            f"客户{i}",
            f"客户{i}",
            f"销售{i % 500}",
            f"区域{i % 20}",
            f"C-{i + 1}",
            contract_end,
            created,
            "",
            attributes,
            now,
        )


def _events(customers: int, count: int, now: datetime) -> Iterator[Row]:
    rng = random.Random(13)
    for i in range(count):
        kind = KINDS[rng.randrange(len(KINDS))]
        amount = float(rng.randint(10, 5000)) if kind == "purchase" else None
        at = now - timedelta(days=rng.uniform(0, 120))
        yield (f"e{i}", rng.randint(1, customers), kind, at, amount, "{}", "import", "x", now)


CUSTOMER_COLUMNS = [
    "id",
    "name",
    "name_key",
    "owner",
    "region",
    "crm_id",
    "contract_end",
    "created_at",
    "company",
    "attributes",
    "updated_at",
]
EVENT_COLUMNS = ["event_id", "customer_id", "kind", "at", "amount", "properties", "source", "digest", "recorded_at"]


async def _generate(url: str, customers: int, events: int, now: datetime) -> None:
    db = await open_database(url)
    async with db.unit_of_work() as uow:
        await ensure_taxonomy(uow, load_builtin(), "bench", now)
    async with db.engine.begin() as conn:
        sqlite = conn.dialect.name == "sqlite"
        await _bulk(conn, "customers", CUSTOMER_COLUMNS, _customers(customers, now, sqlite))
        await _bulk(conn, "customer_events", EVENT_COLUMNS, _events(customers, events, now))
        if not sqlite:
            await conn.execute(text("SELECT setval(pg_get_serial_sequence('customers', 'id'), :n)"), {"n": customers})
            await conn.execute(
                text("SELECT setval(pg_get_serial_sequence('customer_events', 'id'), :n)"), {"n": events}
            )
        await conn.execute(text("ANALYZE"))
    await db.close()


def _only(taxonomy: Taxonomy, *names: str) -> Taxonomy:
    rules = tuple(r for r in taxonomy.rules.rules if r.name in names)
    return dataclasses.replace(taxonomy, rules=RuleSet(rules, taxonomy.rules.webhooks))


HAND_SELECT = """
SELECT customer_id FROM customer_events
WHERE kind = 'purchase' AND at > :since AND at <= :now
GROUP BY customer_id HAVING COUNT(*) > 3
"""
HAND_INSERT = """
INSERT INTO tag_assignments (customer_id, dimension, tag_key, tag, state, source, assigned_by, assigned_at, expires_at)
SELECT customer_id, 'behavior', '活跃客户', '活跃客户', 'active', 'rule', 'bench', :now, :expires
FROM customer_events
WHERE kind = 'purchase' AND at > :since AND at <= :now
GROUP BY customer_id HAVING COUNT(*) > 3
"""


def _param(db: Any, value: datetime) -> Any:
    return value.astimezone(UTC).replace(tzinfo=None) if db.dialect == "sqlite" else value


async def _purchases(url: str, now: datetime, label: str) -> None:
    db = await open_database(url)
    taxonomy = _only(load_builtin(), "30天购买超过3次")
    ctx = RuleContext(store=SqlRulesStore(db.engine), taxonomy=lambda: taxonomy)
    rules = taxonomy.rules.by_trigger("daily")
    since = now - timedelta(days=30)
    started = time.perf_counter()
    async with db.engine.connect() as conn:
        hand = {
            r[0] for r in await conn.execute(text(HAND_SELECT), {"since": _param(db, since), "now": _param(db, now)})
        }
    hand_s = time.perf_counter() - started
    started = time.perf_counter()
    engine: set[int] = set()
    async for ids, group, known in daily_pages(ctx, rules, now):  # run_daily's own selection, without writes
        async with ctx.store.unit_of_work(read_only=True) as uow:
            for facts in await gather(uow, ctx, ids, group, now, known):
                if evaluate(group[0], facts, now, ctx.tz) is not None:
                    engine.add(facts.customer_id)
    engine_s = time.perf_counter() - started
    assert engine == hand, f"engine found {len(engine)} customers, SQL {len(hand)}"
    print(
        f"{label:10s} {db.dialect:10s} >3 purchases/30d evaluate: engine {engine_s:6.2f} s, one SQL statement "
        f"{hand_s:6.2f} s → engine at {hand_s / engine_s:4.2f}x the statement's speed ({len(hand)} customers)",
        flush=True,
    )
    # With writes: the rule run (policy, tag events) vs one INSERT … SELECT (no policy, no events), rolled back.
    async with db.engine.connect() as conn:
        trans = await conn.begin()
        started = time.perf_counter()
        params = {"since": _param(db, since), "now": _param(db, now), "expires": _param(db, now + timedelta(days=30))}
        await conn.execute(text(HAND_INSERT), params)
        insert_s = time.perf_counter() - started
        await trans.rollback()
    started = time.perf_counter()
    report = await run_daily(ctx, now)
    run_s = time.perf_counter() - started
    print(
        f"{label:10s} {db.dialect:10s} >3 purchases/30d with writes: run_daily {run_s:6.2f} s, one INSERT … SELECT "
        f"{insert_s:6.2f} s → {insert_s / run_s:4.2f}x ({report})",
        flush=True,
    )
    await db.close()


async def _builtin(url: str, now: datetime, label: str) -> None:
    db = await open_database(url)
    taxonomy = load_builtin()
    ctx = RuleContext(store=SqlRulesStore(db.engine), taxonomy=lambda: taxonomy)
    before = _rss_kib()
    exact = _reset_peak_rss()
    started = time.perf_counter()
    report = await run_daily(ctx, now + timedelta(minutes=1))
    seconds = time.perf_counter() - started
    growth = max(0, _peak_rss_kib() - before) / 1024
    note = "" if exact else " (peak not resettable: process-wide)"
    print(
        f"{label:10s} {db.dialect:10s} all built-in daily rules {seconds:6.2f} s, peak RSS +{growth:5.1f} MiB{note}"
        f"  ({report})",
        flush=True,
    )
    await db.close()


async def _ingest(url: str, customers: int, count: int, now: datetime, label: str) -> None:
    db = await open_database(url)
    taxonomy = load_builtin()
    ctx = RuleContext(store=SqlRulesStore(db.engine), taxonomy=lambda: taxonomy)
    rng = random.Random(17)
    lines = [
        json.dumps(
            {
                "id": f"new-{i}",
                "customer": f"C-{rng.randint(1, customers)}",
                "kind": KINDS[i % len(KINDS)],
                "at": (now - timedelta(hours=rng.uniform(0, 48))).isoformat(),
                "amount": 100,
            }
        )
        for i in range(count)
    ]
    stored = 0
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        parsed = parse_events("\n".join(lines[start : start + BATCH]), "jsonl", ctx.tz)
        report = await ingest_events(ctx, parsed, now)
        stored += report.stored
    seconds = time.perf_counter() - started
    print(
        f"{label:10s} {db.dialect:10s} ingest with event rules: {stored} events in {seconds:6.2f} s = "
        f"{stored / seconds:8.0f} events/s",
        flush=True,
    )
    await db.close()


async def _run(url: str, customers: int, events: int, ingest: int, now: datetime) -> None:
    started = time.perf_counter()
    await _generate(url, customers, events, now)
    label = f"{customers // 1000}k/{events // 1000}k"
    print(
        f"{label:10s} generated {customers} customers, {events} events in {time.perf_counter() - started:.1f} s "
        "(not counted)",
        flush=True,
    )
    await _purchases(url, now, label)
    await _builtin(url, now, label)
    await _ingest(url, customers, ingest, now, label)


async def _run_postgres(url: str, customers: int, events: int, ingest: int, now: datetime) -> None:
    async with scratch_postgres(url) as scratch:
        await _run(scratch, customers, events, ingest, now)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench rules", description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--ingest", type=int, default=50_000, help="new events for the ingest measurement")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server (scratch database)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    args = parser.parse_args(argv)
    if args.customers < 1 or args.events < 1 or args.ingest < 1:
        parser.error("--customers, --events and --ingest must be at least 1")
    now = datetime.now(UTC)
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(_run(f"sqlite+aiosqlite:///{folder}/bench.db", args.customers, args.events, args.ingest, now))
    if args.postgres:
        asyncio.run(_run_postgres(args.postgres, args.customers, args.events, args.ingest, now))
    return 0
