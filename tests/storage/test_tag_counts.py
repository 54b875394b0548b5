"""Kept tag counts (migration 0017) agree with a full recount after random writes through the real services."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, insert, select, text, update

from cli import main
from core.alerts.jobs import AlertJobs, expire_lapsed
from core.alerts.ports import BulkTag
from core.importing.customers import import_customers
from core.importing.files import CustomerRow
from core.tags.assignments import TaggingRules, apply_tag, change_tags, remove_tag
from core.taxonomy.lifecycle import merge_tags
from core.taxonomy.store import import_taxonomy
from core.types import Source
from storage import tables as t
from storage.console import ConsoleStore
from storage.database import Database, _alembic_config, open_database
from storage.outbox import SqlAlertStore
from storage.tag_counts import differences, fold, full_count, heavy_customers, live_tags, recount
from tagging.policy import PolicyRefusal
from tagging.taxonomy import Taxonomy

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RULES = TaggingRules(hard_cap=100)
TAGS = ["企业客户", "今日已联系", "华东", "VIP客户", "普通客户", "潜在客户", "活跃客户", "沉默客户", "询价客户",
        "售后工单", "紧急工单", "投诉风险"]  # fmt: skip


async def _import(database: Database, taxonomy: Taxonomy, rng: random.Random, first: int, n: int) -> None:
    rows = [
        CustomerRow(row=i + 2, name=f"客户{first + i:04d}", crm_id=f"C-{first + i:04d}", tags=tuple(_pick(rng)))
        for i in range(n)
    ]
    await import_customers(database, taxonomy, RULES, rows, actor="import", now=NOW)


async def _seed(database: Database, taxonomy: Taxonomy, seed: int, customers: int) -> random.Random:
    """The taxonomy and `customers` imported customers with a few tags each; the random source, to go on with."""
    rng = random.Random(seed)
    async with ConsoleStore(database.engine).unit_of_work() as uow:
        await import_taxonomy(uow, taxonomy, "test", NOW)
    await _import(database, taxonomy, rng, 0, customers)
    return rng


def _pick(rng: random.Random) -> list[str]:
    """A few tags, at most one of the exclusive value dimension (an import refuses two)."""
    value = {"VIP客户", "普通客户", "潜在客户"}
    names = rng.sample(TAGS, rng.randint(0, 5))
    return [n for n in names if n not in value] + [n for n in names if n in value][:1]


async def _ids(database: Database) -> list[int]:
    async with database.engine.connect() as conn:
        return [r[0] for r in await conn.execute(select(t.customers.c.id).order_by(t.customers.c.id))]


async def _random_writes(database: Database, taxonomy: Taxonomy, rng: random.Random, steps: int) -> None:
    """Adds, removals, change sets, the churn job's set-based writes, expiry, deletes, folds and re-imports."""
    store = SqlAlertStore(database.engine)
    jobs = AlertJobs(store=store, taxonomy=lambda: taxonomy, deliverers={})
    for step in range(steps):
        ids = await _ids(database)
        cid = rng.choice(ids)
        now = NOW + timedelta(minutes=step)
        op = rng.randrange(9)
        try:
            if op <= 4:
                async with database.unit_of_work() as uow:
                    if op <= 2:
                        tag = rng.choice(TAGS)
                        await apply_tag(uow, taxonomy, RULES, cid, tag, actor="a", source=Source.MANUAL, now=now)
                    elif op == 3:
                        tag = rng.choice(TAGS)
                        await remove_tag(uow, taxonomy, cid, tag, actor="a", source=Source.MANUAL, now=now)
                    else:
                        add, remove = rng.sample(TAGS, 2), rng.sample(TAGS, 2)
                        await change_tags(uow, taxonomy, RULES, cid, add, remove, actor="a", now=now, evidence={})
            elif op == 5:  # the churn job's set-based tagging and untagging
                async with store.unit_of_work() as scan:
                    some = rng.sample(ids, min(len(ids), 6))
                    bulk = BulkTag("risk", "高危流失", Source.RULE, "kebiao", now, None)
                    await scan.scans.tag_many(some, bulk, RULES.hard_cap)
                    await scan.scans.untag_many(rng.sample(some, 3), "risk", "高危流失", "rule", now, actor="kebiao")
            else:
                async with database.engine.begin() as conn:
                    a = t.tag_assignments.c
                    if op == 6:  # a customer's active tags lapse (one UPDATE of expiry dates); the expire job ends them
                        await conn.execute(
                            update(t.tag_assignments)
                            .where(a.customer_id == cid, a.state == "active")
                            .values(expires_at=now - timedelta(seconds=1))
                        )
                    elif op == 7:  # assignments go with their customer (ON DELETE CASCADE)
                        await conn.execute(t.customers.delete().where(t.customers.c.id == cid))
                    else:  # many rows of many customers in one DELETE
                        await conn.execute(t.tag_assignments.delete().where(a.id % 29 == step % 29))
        except (PolicyRefusal, ValueError, LookupError):
            pass  # a refused change writes nothing; the counts must still agree
        if op == 6:
            await expire_lapsed(jobs, now + timedelta(seconds=1))
        if step % 11 == 10:
            async with database.engine.begin() as conn:
                await fold(conn)
        if step % 17 == 16:
            await _import(database, taxonomy, rng, 1000 + step, 8)


async def test_counts_follow_every_writer_and_match_a_full_recount(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    rng = await _seed(database, sample_taxonomy, 20260301, 40)  # COPY on PostgreSQL, inserted afresh
    assert await differences(database.engine) == []
    await _random_writes(database, sample_taxonomy, rng, 120)
    async with ConsoleStore(database.engine).unit_of_work() as uow:  # a merge renames holders in one UPDATE
        await merge_tags(uow, "stage", "询价客户", "紧急工单", "m-1", NOW + timedelta(days=1))
    assert await differences(database.engine) == []
    async with database.engine.connect() as conn:
        full = await full_count(conn)
    assert len(full.holders) >= 8 and len(full.pairs) >= 5 and full.customers  # the writes reached many counts
    async with database.engine.begin() as conn:
        assert await fold(conn) > 0
        assert await fold(conn) == 0
    assert await differences(database.engine) == []


async def test_live_counts_leave_out_rows_past_their_expiry(database: Database, sample_taxonomy: Taxonomy) -> None:
    await _seed(database, sample_taxonomy, 7, 30)
    a = t.tag_assignments.c
    async with database.engine.begin() as conn:  # a third of the customers' tags lapse; nothing has ended them
        await conn.execute(
            update(t.tag_assignments).where(a.customer_id % 3 == 0).values(expires_at=NOW + timedelta(hours=1))
        )
    later = NOW + timedelta(hours=2)
    async with database.engine.connect() as conn:
        holders, pairs = await live_tags(conn, later)
        live = (a.state == "active") & (a.expires_at.is_(None) | (a.expires_at > later))
        want = {
            (d, k): int(n)
            for d, k, n in await conn.execute(
                select(a.dimension, a.tag_key, func.count()).where(live).group_by(a.dimension, a.tag_key)
            )
        }
        per_customer: dict[int, int] = {
            int(cid): int(n)
            for cid, n in await conn.execute(select(a.customer_id, func.count()).where(live).group_by(a.customer_id))
        }
        heavy = await heavy_customers(conn, later, 3, 100)
    assert {k: n for k, (_, n) in holders.items()} == want
    assert sum(pairs.values()) > 0
    assert [(cid, n) for cid, _, n in heavy] == sorted(
        ((cid, n) for cid, n in per_customer.items() if n >= 3), key=lambda x: (-x[1], x[0])
    )
    assert all(cid % 3 != 0 for cid, _, _ in heavy)


async def test_recount_repairs_counts_that_drifted(database: Database, sample_taxonomy: Taxonomy) -> None:
    await _seed(database, sample_taxonomy, 3, 20)
    async with database.engine.begin() as conn:
        await conn.execute(update(t.customer_tag_counts).values(n=t.customer_tag_counts.c.n + 1))
        await conn.execute(t.tag_count_changes.delete())
    drift = await differences(database.engine)
    assert any("holders of" in d for d in drift) and any("active tags of customer" in d for d in drift)
    async with database.engine.begin() as conn:
        await recount(conn)
    assert await differences(database.engine) == []


async def test_cli_recount_checks_and_rebuilds(
    database_url: str, sample_taxonomy: Taxonomy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = await open_database(database_url)
    try:
        await _seed(database, sample_taxonomy, 9, 12)
        async with database.engine.begin() as conn:
            await fold(conn)
            await conn.execute(update(t.tag_counts).values(n=t.tag_counts.c.n + 2))
    finally:
        await database.close()
    monkeypatch.setenv("KEBIAO_DATABASE_URL", database_url)
    assert await asyncio.to_thread(main, ["reports", "recount", "--check"]) == 1
    out = capsys.readouterr().out
    assert "holders of" in out and "kept" in out and "recounted" in out and "differences" in out
    assert await asyncio.to_thread(main, ["reports", "recount"]) == 0
    assert "rebuilt" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["reports", "recount", "--check"]) == 0
    assert "agree" in capsys.readouterr().out


async def _hold(database: Database, customer_id: int, keys: list[str]) -> None:
    """Active `product` rows for `keys`, written straight to the table (the triggers count every writer)."""
    async with database.engine.begin() as conn:
        for key in keys:
            await conn.execute(
                insert(t.tag_assignments).values(
                    customer_id=customer_id, dimension="product", tag_key=key, tag=key, state="active",
                    source="manual", assigned_by="a", assigned_at=NOW,
                )
            )


async def _pair_rows(database: Database) -> list[tuple[int, int]]:
    """(n, how many keys listed) of each change row that lists pairs."""
    c = t.tag_count_changes.c
    async with database.engine.connect() as conn:
        rows = (await conn.execute(select(c.n, c.others).where(c.others.is_not(None)).order_by(c.id))).all()
    # a text[] on PostgreSQL, a JSON array on SQLite
    return [(int(n), len(others if isinstance(others, list) else json.loads(others))) for n, others in rows]


async def test_a_tag_added_to_a_customer_holding_many_logs_one_row_of_pairs(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    await _seed(database, sample_taxonomy, 5, 3)
    cid = (await _ids(database))[0]
    await _hold(database, cid, [f"产品{i:03d}" for i in range(40)])
    async with database.engine.begin() as conn:
        await fold(conn)
    await _hold(database, cid, ["产品999"])
    assert await _pair_rows(database) == [(1, 40)]  # one row for 40 pairs, not 40 rows
    a = t.tag_assignments.c
    async with database.engine.begin() as conn:  # removal is an UPDATE of state: one row again, counting down
        await conn.execute(
            update(t.tag_assignments).where(a.customer_id == cid, a.tag_key == "产品005").values(state="removed")
        )
    assert (await _pair_rows(database))[1:] == [(-1, 40)]
    assert await differences(database.engine) == []
    async with database.engine.begin() as conn:
        assert await fold(conn) >= 4
    assert await differences(database.engine) == []


async def test_upgrade_keeps_changes_logged_one_row_per_pair_and_downgrade_unlists(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    def migrate(connection: object, to: str) -> None:
        if to == "head":
            command.upgrade(_alembic_config(connection), to)  # type: ignore[arg-type]
        else:
            command.downgrade(_alembic_config(connection), to)  # type: ignore[arg-type]

    await _seed(database, sample_taxonomy, 11, 3)
    cid = (await _ids(database))[0]
    async with database.engine.begin() as conn:
        await conn.run_sync(migrate, "0020")
    await _hold(database, cid, ["旧甲", "旧乙", "旧丙"])  # 0017's triggers: one change row per pair
    async with database.engine.begin() as conn:
        await conn.run_sync(migrate, "head")
    await _hold(database, cid, ["新甲", "新乙"])
    assert len(await _pair_rows(database)) == 2  # the old rows read beside the listed ones
    assert await differences(database.engine) == []

    async with database.engine.begin() as conn:
        await conn.run_sync(migrate, "0020")
        columns = (await conn.execute(text("SELECT * FROM tag_count_changes LIMIT 0"))).keys()
        assert "others" not in set(columns)
        kept = {
            (d, k, o): int(n)
            for d, k, o, n in await conn.execute(
                text(
                    "SELECT dimension, tag_key, other_key, sum(n) FROM (SELECT dimension, tag_key, other_key, n"
                    " FROM tag_counts UNION ALL SELECT dimension, tag_key, other_key, n FROM tag_count_changes) u"
                    " WHERE other_key <> '' GROUP BY dimension, tag_key, other_key HAVING sum(n) <> 0"
                )
            )
        }
        assert kept == (await full_count(conn)).pairs
    async with database.engine.begin() as conn:
        await conn.run_sync(migrate, "head")
