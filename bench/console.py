"""Console pages at scale: `python -m bench console [--customers N] [--assignments M] [--requests R] [--postgres URL]`.

Generates customers, active tag assignments with their `added` events, and stored suggestions (COPY into a
scratch PostgreSQL database; generation time printed apart), starts the real app in this process, signs in
with the admin token and times each console page R times. Printed per page: the first (cold) request and
p50/p95 of the rest, against the 200 ms target. The reports page keeps its figures per process (refreshed in
the background after console.pages.reports.REPORT_TTL), so its cold figure is the full aggregate cost and
the others are the page itself. The same holds for the keyword candidates page (mined from the generated
labelled examples, kept per taxonomy version). "rule test" is the POST that tests a daily rule over every
stored customer (a dry run, nothing written): an action rather than a page, timed with fewer requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from bench.alerts import _bulk
from bench.scratch import scratch_postgres
from core.taxonomy.store import import_taxonomy
from storage.database import open_database
from tagging.builtin import load_builtin
from tagging.normaliser import name_key

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
TARGET_MS = 200.0
TOKEN = "bench-console-token-0123456789abcdef"
SECRET = "bench-console-secret-0123456789abcdef"
PHRASES = (
    "能便宜一点吗",
    "批量买打几折",
    "屏幕一直闪",
    "一直死机重启",
    "合同续签的事",
    "想了解产品A",
    "发票什么时候开",
)
CHAT = ("你好", "谢谢", "在吗", "麻烦问下", "好的收到")
RULE_TEST = {
    "original": "服务到期未续费",
    "name": "服务到期未续费",
    "trigger": "daily",
    "when": "all:\n  - field: {name: contract_end, within_days: 30}\n  - lacks: 续费意向\n",
    "then": "- add: 高危流失\n- notify: [managers]\n",
    "enabled": "1",
    "since": "30",
}
TEXTS = ("能给我报价吗", "我要投诉你们的服务", "设备坏了需要维修", "多少钱一台", "我们公司采购一批", "合同快到期了")


def _tags() -> list[tuple[str, str, bool]]:
    taxonomy = load_builtin(None)
    return [(t.dimension, t.name, d.exclusive) for d in taxonomy.dimensions for t in d.iter_tags()]


def _rows(customers: int, assignments: int, now: datetime) -> tuple[Iterator[tuple[Any, ...]], ...]:
    rng = random.Random(11)
    tags = _tags()
    per = max(1, assignments // customers)

    def customer_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(1, customers + 1):
            yield (i, f"客户{i}", f"客户{i}", f"公司{i % 1000}", f"销售{i % 300}", f"区域{i % 20}", "{}", now, now)

    def picks(cid: int) -> list[tuple[str, str, bool]]:
        r = random.Random(cid)
        chosen, seen_exclusive = [], set()
        for dim, name, exclusive in r.sample(tags, min(len(tags), per + 3)):
            if exclusive and dim in seen_exclusive:
                continue
            seen_exclusive.add(dim) if exclusive else None
            chosen.append((dim, name, exclusive))
            if len(chosen) == per:
                break
        return chosen

    def assignment_rows() -> Iterator[tuple[Any, ...]]:
        for cid in range(1, customers + 1):
            for dim, name, _ in picks(cid):
                at = now - timedelta(days=(cid * 7 + len(name)) % 60)
                yield (cid, dim, name_key(name), name, "active", "import", "bench", at, None)

    def event_rows() -> Iterator[tuple[Any, ...]]:
        for cid in range(1, customers + 1):
            for dim, name, _ in picks(cid):
                at = now - timedelta(days=(cid * 7 + len(name)) % 60)
                yield (cid, dim, name, "added", "bench", "import", at, "{}")

    def suggestion_rows() -> Iterator[tuple[Any, ...]]:
        statuses = ("accepted", "accepted", "rejected", "pending", "expired")
        for n in range(customers // 2):
            dim, name, _ = tags[rng.randrange(len(tags))]
            evidence = json.dumps({"matched": [name], "excerpt": TEXTS[n % len(TEXTS)]}, ensure_ascii=False)
            at = now - timedelta(minutes=n)
            yield (
                rng.randint(1, customers),
                f"bench-{n}",
                dim,
                name_key(name),
                name,
                0.9,
                evidence,
                statuses[n % len(statuses)],
                False,
                at,
            )

    def example_rows() -> Iterator[tuple[Any, ...]]:
        for n in range(max(100, customers // 10)):
            dim, name, _ = tags[n % len(PHRASES)]
            text_ = f"{CHAT[n % len(CHAT)]}，{PHRASES[n % len(PHRASES)]}{n % 13}"
            positive = n % 4 != 3
            yield (text_, dim, name, positive, "accepted" if positive else "rejected", rng.randint(1, customers), now)

    def message_rows() -> Iterator[tuple[Any, ...]]:
        for n in range(max(100, customers // 20)):
            yield (f"bench-m{n}", "msteams", f"conv-{n % 500}", rng.randint(1, customers), f"{CHAT[n % 5]}，{n}", now)

    return customer_rows(), assignment_rows(), event_rows(), suggestion_rows(), example_rows(), message_rows()


async def _generate(url: str, customers: int, assignments: int, now: datetime) -> None:
    db = await open_database(url)
    async with db.unit_of_work() as uow:
        await import_taxonomy(uow, load_builtin(None), "bench", now)
    customer_rows, assignment_rows, event_rows, suggestion_rows, examples, texts = _rows(customers, assignments, now)
    async with db.engine.begin() as conn:
        await _bulk(
            conn,
            "customers",
            ["id", "name", "name_key", "company", "owner", "region", "attributes", "created_at", "updated_at"],
            customer_rows,
        )
        await _bulk(
            conn,
            "tag_assignments",
            [
                "customer_id",
                "dimension",
                "tag_key",
                "tag",
                "state",
                "source",
                "assigned_by",
                "assigned_at",
                "expires_at",
            ],
            assignment_rows,
        )
        await _bulk(
            conn,
            "tag_events",
            ["customer_id", "dimension", "tag", "kind", "actor", "source", "at", "evidence"],
            event_rows,
        )
        await _bulk(
            conn,
            "suggestions",
            [
                "customer_id",
                "message_key",
                "dimension",
                "tag_key",
                "tag",
                "score",
                "evidence",
                "status",
                "auto_applied",
                "created_at",
            ],
            suggestion_rows,
        )
        await _bulk(
            conn,
            "learning_examples",
            ["text", "dimension", "tag", "positive", "outcome", "customer_id", "created_at"],
            examples,
        )
        await _bulk(
            conn,
            "learning_messages",
            ["message_key", "channel", "conversation_id", "customer_id", "text", "created_at"],
            texts,
        )
        await conn.execute(text("SELECT setval(pg_get_serial_sequence('customers', 'id'), :n)"), {"n": customers})
    # A database in service is vacuumed by autovacuum; freshly COPYed tables are not yet (index-only scans
    # need the visibility map), so vacuum once as autovacuum would.
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))
    await db.close()


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(url: str, requests: int, customers: int) -> list[tuple[str, float, float, float]]:
    from aiohttp.test_utils import TestClient, TestServer

    from app import create_app
    from config import Settings

    env = {
        "KEBIAO_DATABASE_URL": url,
        "KEBIAO_SCHEDULER": "off",
        "KEBIAO_ADMIN_TOKEN": TOKEN,
        "KEBIAO_CONSOLE_SECRET": SECRET,
    }
    client = TestClient(TestServer(create_app(Settings.from_env(env, dotenv=None))))
    await client.start_server()
    try:
        page = await (await client.get("/console/signin")).text()
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert csrf
        signed = await client.post("/console/signin/token", data={"csrf": csrf.group(1), "token": TOKEN})
        assert signed.status == 200, signed.status
        middle = customers // 2
        pages = [
            ("taxonomy tree", "/console/taxonomy"),
            ("tag edit form", "/console/taxonomy/tag?dimension=stage&name=询价客户"),
            ("history", "/console/taxonomy/history"),
            ("search by name", f"/console/customers?mode=name&q=客户{middle}"),
            ("search by tags", "/console/customers?mode=expr&q=询价客户 AND NOT 沉默客户&page=40"),
            ("customer page", f"/console/customers/{middle}"),
            ("reports", "/console/reports"),
            ("reports CSV", "/console/reports/tags.csv"),
            ("rules", "/console/rules"),
            ("rule edit form", "/console/rules/rule?name=服务到期未续费"),
            ("keyword cands.", "/console/keywords"),
        ]
        page = await (await client.get("/console/rules")).text()
        token = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert token
        rule_test = RULE_TEST | {"csrf": token.group(1)}
        out = []
        for label, path in [*pages, ("rule test (POST)", "/console/rules/test")]:
            timings = []
            posting = path.endswith("/test")
            for _ in range((max(2, requests // 10) if posting else requests) + 1):
                started = time.perf_counter()
                response = await (client.post(path, data=rule_test) if posting else client.get(path))
                await response.read()
                assert response.status == 200, (path, response.status)
                timings.append((time.perf_counter() - started) * 1000)
            cold, warm = timings[0], timings[1:]
            out.append((label, cold, statistics.median(warm), _percentile(warm, 0.95)))
        return out
    finally:
        await client.close()


async def _run(url: str, customers: int, assignments: int, requests: int) -> int:
    now = datetime.now(UTC)
    async with scratch_postgres(url) as scratch:
        started = time.perf_counter()
        await _generate(scratch, customers, assignments, now)
        print(
            f"generated {customers:,} customers, ~{assignments:,} assignments and events, "
            f"{customers // 2:,} suggestions in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        results = await _measure(scratch, requests, customers)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    print(f"{'page':16s} {'cold ms':>9s} {'p50 ms':>8s} {'p95 ms':>8s}  target p95 <= {TARGET_MS:.0f} ms")
    slow = 0
    for label, cold, p50, p95 in results:
        mark = "ok" if p95 <= TARGET_MS else "SLOW"
        slow += p95 > TARGET_MS
        print(f"{label:16s} {cold:9.1f} {p50:8.1f} {p95:8.1f}  {mark}")
    return 0


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench console", description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--assignments", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page (after one cold)")
    parser.add_argument("--postgres", default=os.environ.get("KEBIAO_TEST_POSTGRES_URL", DEFAULT_URL))
    options = parser.parse_args(argv)
    return asyncio.run(_run(options.postgres, options.customers, options.assignments, options.requests))
