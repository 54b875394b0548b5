"""Bulk data for the scale benchmark: customers, tag assignments, tag events and customer events by COPY.

The rows are generated lazily (a seeded random.Random, so a run is repeatable) and streamed into PostgreSQL with
asyncpg's binary COPY. The big tables' secondary indexes are dropped for the load and rebuilt after it, as a
bulk load into a live schema would be done; then the id sequences are moved past the loaded ids and the tables
analysed. Nothing here is timed by the benchmark.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from tagging.builtin import initial_taxonomy
from tagging.normaliser import name_key

log = logging.getLogger(__name__)

CITIES = [
    "上海",
    "北京",
    "杭州",
    "深圳",
    "广州",
    "成都",
    "南京",
    "苏州",
    "武汉",
    "西安",
    "重庆",
    "天津",
    "宁波",
    "厦门",
    "青岛",
    "长沙",
    "合肥",
    "郑州",
    "济南",
    "福州",
]
BRAND_CHARS = "星辰华宇博远瑞丰鼎盛恒泰嘉信金源新创天启正和安康明德中科云海广汇东方聚鑫永达润通佳美智联汇"
INDUSTRIES = [
    "科技",
    "贸易",
    "电子",
    "机械",
    "医药",
    "物流",
    "教育",
    "咨询",
    "软件",
    "食品",
    "建材",
    "服饰",
    "化工",
    "能源",
    "传媒",
    "环保",
    "餐饮",
    "文化",
    "汽车",
    "金融",
]
SUFFIXES = ("有限公司", "股份有限公司", "集团", "工作室")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红梅鹏飞宇浩然子轩晓东"
REGIONS = ("华东", "华南", "华北", "西南", "")
EVENT_KINDS = ("purchase", "renewal", "login", "ticket", "visit")
ASSIGNMENT_STATES = ("active",) * 17 + ("removed", "removed", "expired")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How many rows of each kind to load."""

    customers: int
    assignments: int
    events: int
    tag_events: int


@dataclass(frozen=True, slots=True)
class TagRef:
    dimension: str
    key: str
    name: str


def company_name(rng: random.Random) -> str:
    brand = rng.choice(BRAND_CHARS) + rng.choice(BRAND_CHARS)
    return rng.choice(CITIES) + brand + rng.choice(INDUSTRIES) + rng.choice(SUFFIXES)


def person_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def customer_rows(n: int, now: datetime, seed: int) -> Iterator[tuple[object, ...]]:
    """Half companies (name only), half people at a company; crm ids CRM-0000001…, owners agent-0…agent-199."""
    rng = random.Random(seed)
    today = now.date()
    for i in range(1, n + 1):
        if i % 2:
            name, company = company_name(rng), ""
        else:
            name, company = person_name(rng), company_name(rng)
        contract: date | None = today + timedelta(days=rng.randint(-60, 365)) if i % 3 == 0 else None
        yield (
            i,
            name,
            name_key(name),
            company,
            f"agent-{i % 200}",
            REGIONS[i % len(REGIONS)],
            f"CRM-{i:07d}",
            f"wm{i:010d}" if i % 4 == 0 else None,
            contract,
            "{}",
            now - timedelta(days=rng.randint(0, 1000)),
            now,
        )


def catalogue() -> tuple[list[TagRef], list[TagRef]]:
    """(tags of the exclusive value dimension, every other tag) of the built-in taxonomy."""
    exclusive: list[TagRef] = []
    free: list[TagRef] = []
    for dimension in initial_taxonomy(None).dimensions:
        refs = [TagRef(dimension.key, name_key(tag.name), tag.name) for tag in dimension.iter_tags()]
        (exclusive if dimension.exclusive else free).extend(refs)
    return exclusive, free


def assignment_rows(sizes: Sizes, now: datetime, seed: int) -> Iterator[tuple[object, ...]]:
    """`assignments / customers` distinct tags per customer (one exclusive), skewed towards the first tags."""
    rng = random.Random(seed + 1)
    exclusive, free = catalogue()
    per = max(1, min(len(free) + 1, sizes.assignments // max(1, sizes.customers)))
    weights = [1.0 / (1 + k) for k in range(len(free))]
    row_id = 0
    for customer in range(1, sizes.customers + 1):
        chosen: dict[str, TagRef] = {}
        while len(chosen) < per - 1:
            ref = rng.choices(free, weights)[0]
            chosen[ref.key + ref.dimension] = ref
        for ref in [rng.choice(exclusive), *chosen.values()]:
            row_id += 1
            state = rng.choice(ASSIGNMENT_STATES)
            assigned = now - timedelta(days=rng.randint(1, 700), seconds=rng.randint(0, 86_399))
            expires = now + timedelta(days=rng.randint(1, 60)) if state == "active" and row_id % 25 == 0 else None
            ended = assigned + timedelta(days=rng.randint(1, 30)) if state != "active" else None
            yield (
                row_id, customer, ref.dimension, ref.key, ref.name, state, "keyword",
                f"agent-{customer % 200}", assigned, expires, ended,
            )  # fmt: skip


def tag_event_rows(sizes: Sizes, now: datetime, seed: int) -> Iterator[tuple[object, ...]]:
    rng = random.Random(seed + 2)
    exclusive, free = catalogue()
    tags = exclusive + free
    for i in range(1, sizes.tag_events + 1):
        ref = rng.choice(tags)
        at = now - timedelta(days=rng.randint(0, 365), seconds=rng.randint(0, 86_399))
        kind = "added" if i % 5 else "removed"
        yield (i, rng.randint(1, sizes.customers), ref.dimension, ref.name, kind, "agent-1", "keyword", at, "{}", None)


def customer_event_rows(sizes: Sizes, now: datetime, seed: int) -> Iterator[tuple[object, ...]]:
    rng = random.Random(seed + 3)
    for i in range(1, sizes.events + 1):
        kind = EVENT_KINDS[i % len(EVENT_KINDS)]
        at = now - timedelta(days=rng.randint(0, 365), seconds=rng.randint(0, 86_399))
        amount = round(rng.uniform(10, 5000), 2) if kind in ("purchase", "renewal") else None
        digest = hashlib.sha256(f"ev-{i}".encode()).hexdigest()
        yield (i, f"ev-{i:08d}", rng.randint(1, sizes.customers), kind, at, amount, "{}", "import", digest, now)


COLUMNS = {
    "customers": (
        "id", "name", "name_key", "company", "owner", "region", "crm_id", "wecom_external_userid",
        "contract_end", "attributes", "created_at", "updated_at",
    ),
    "tag_assignments": (
        "id", "customer_id", "dimension", "tag_key", "tag", "state", "source", "assigned_by", "assigned_at",
        "expires_at", "ended_at",
    ),
    "tag_events": (
        "id", "customer_id", "dimension", "tag", "kind", "actor", "source", "at", "evidence", "previous",
    ),
    "customer_events": (
        "id", "event_id", "customer_id", "kind", "at", "amount", "properties", "source", "digest", "recorded_at",
    ),
}  # fmt: skip

SECONDARY_INDEXES = """
SELECT i.indexname, i.indexdef FROM pg_indexes i
WHERE i.schemaname = current_schema() AND i.tablename = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
"""


def asyncpg_dsn(url: str) -> str:
    """The plain libpq URL asyncpg takes, from a SQLAlchemy `postgresql+asyncpg://` one."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def load(url: str, sizes: Sizes, now: datetime, seed: int = 13) -> dict[str, float]:
    """COPY the generated rows into the (migrated, empty) database at `url`; seconds per table."""
    sources = {
        "customers": customer_rows(sizes.customers, now, seed),
        "tag_assignments": assignment_rows(sizes, now, seed),
        "tag_events": tag_event_rows(sizes, now, seed),
        "customer_events": customer_event_rows(sizes, now, seed),
    }
    return await copy_in(url, sources)


async def copy_in(url: str, sources: Mapping[str, Iterable[tuple[object, ...]]]) -> dict[str, float]:
    """COPY `sources` (table: rows in COLUMNS order) into the (migrated, empty) database at `url` as a database
    in use would hold them: tag counts built once, sequences past the rows, vacuumed and analyzed; seconds per
    step."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    timings: dict[str, float] = {}
    try:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        indexes = await conn.fetch(SECONDARY_INDEXES, list(sources))
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        # The tag-count triggers would pair ten million new rows without their indexes: count once at the end.
        await conn.execute("ALTER TABLE tag_assignments DISABLE TRIGGER USER")
        for table, rows in sources.items():
            began = time.perf_counter()
            await conn.copy_records_to_table(table, records=rows, columns=list(COLUMNS[table]))
            timings[table] = time.perf_counter() - began
            log.info("loaded %s in %.1f s", table, timings[table])
        began = time.perf_counter()
        for row in indexes:
            await conn.execute(row["indexdef"])
        timings["indexes"] = time.perf_counter() - began
        await conn.execute("ALTER TABLE tag_assignments ENABLE TRIGGER USER")
        began = time.perf_counter()
        await count_tags(url)
        timings["tag counts"] = time.perf_counter() - began
        for table in sources:
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 1) FROM {table}))"
            )
        began = time.perf_counter()
        # VACUUM sets the visibility map a running database's autovacuum would have set, so index-only scans
        # do not visit the heap; freshly COPYed rows would otherwise make every path look slower than in use.
        await conn.execute("VACUUM (ANALYZE)")
        timings["vacuum analyze"] = time.perf_counter() - began
    finally:
        await conn.close()
    return timings


async def count_tags(url: str) -> None:
    """Build the tag counts the triggers keep from the loaded assignments (as `kebiao reports recount`)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from storage.tag_counts import recount

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await recount(conn)
    finally:
        await engine.dispose()


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
