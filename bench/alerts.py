"""Alert scans at scale: `python -m bench alerts [--customers N] [--assignments M] [--postgres URL] [--tracemalloc]`.

Generates customers, tag assignments and customer activity (COPY on PostgreSQL, executemany on SQLite; the
generation time is printed apart), then times the expiry-digest scan and the churn scan and prints seconds
and memory. Memory is the growth of the process's peak RSS during the scan (the peak is reset before it,
so nothing the generator allocated counts); `--tracemalloc` also reports tracemalloc's peak of Python
allocations, at the cost of slower timings. Both scans stream, so memory stays flat as the data grows.

PostgreSQL runs in a scratch database created beside the one in the URL and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.scratch import scratch_postgres
from core.alerts.jobs import AlertJobs, score_churn, warn_expiring
from core.types import Role
from storage import tables as t
from storage.database import open_database
from storage.outbox import SqlAlertStore
from tagging.builtin import load_builtin
from tagging.normaliser import name_key

TAGS = [
    ("stage", "询价客户"),
    ("stage", "方案评估"),
    ("risk", "竞品对比"),
    ("risk", "售后工单"),
    ("behavior", "活跃客户"),
]
CHUNK = 50_000  # rows per bulk insert: bounds the generator's own memory

Row = tuple[Any, ...]


def _customers(count: int, now: datetime, rng: random.Random) -> Iterator[Row]:
    for i in range(count):
        contract_end = (now + timedelta(days=rng.randint(-10, 400))).date() if i % 3 else None
        created = now - timedelta(days=rng.randint(1, 500))
        yield (i + 1, f"客户{i}", f"客户{i}", f"销售{i % 500}", f"区域{i % 20}", contract_end, created)


def _assignments(customers: int, assignments: int, now: datetime, rng: random.Random) -> Iterator[Row]:
    per = max(1, assignments // customers)
    for cid in range(1, customers + 1):
        for k in range(per):
            dim, tag = TAGS[(cid + k) % len(TAGS)]
            key = name_key(tag) + (f"#{k}" if k >= len(TAGS) else "")
            assigned = now - timedelta(days=rng.randint(0, 90))
            expires = now + timedelta(days=rng.uniform(0.1, 200)) if rng.random() < 0.5 else None
            yield (cid, dim, key, tag, "active", "import", "bench", assigned, expires)


def _activity(customers: int, now: datetime, rng: random.Random) -> Iterator[Row]:
    for cid in range(1, customers + 1, 2):  # half the customers talked with us at some point
        yield (cid, now - timedelta(days=rng.randint(0, 120)), "wecom")


CUSTOMER_COLUMNS = ["id", "name", "name_key", "owner", "region", "contract_end", "created_at"]
ASSIGNMENT_COLUMNS = [
    "customer_id",
    "dimension",
    "tag_key",
    "tag",
    "state",
    "source",
    "assigned_by",
    "assigned_at",
    "expires_at",
]
ACTIVITY_COLUMNS = ["customer_id", "last_message_at", "last_channel"]


def _chunks(rows: Iterator[Row]) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _bulk(conn: AsyncConnection, table: str, columns: list[str], rows: Iterator[Row]) -> None:
    """COPY on PostgreSQL; a prepared executemany on SQLite (datetimes in SQLAlchemy's SQLite text form)."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        for chunk in _chunks(rows):
            await raw.copy_records_to_table(table, records=chunk, columns=columns)
        return
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    for chunk in _chunks(rows):
        await raw.executemany(sql, [tuple(_sqlite(v) for v in row) for row in chunk])


def _sqlite(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


async def _generate(url: str, customers: int, assignments: int, now: datetime) -> None:
    db = await open_database(url)
    rng = random.Random(7)
    async with db.engine.begin() as conn:
        await conn.execute(
            t.users.insert(),
            [
                {
                    "id": f"经理{i}",
                    "role": Role.MANAGER.value,
                    "regions": [f"区域{i}"],
                    "display_name": "",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(20)
            ],
        )
        # attributes/company/updated_at are constant: COPY and executemany need every NOT NULL column.
        rows = (
            (*row, "", "{}" if conn.dialect.name == "sqlite" else json.dumps({}), now)
            for row in _customers(customers, now, rng)
        )
        await _bulk(conn, "customers", [*CUSTOMER_COLUMNS, "company", "attributes", "updated_at"], rows)
        await _bulk(conn, "tag_assignments", ASSIGNMENT_COLUMNS, _assignments(customers, assignments, now, rng))
        await _bulk(conn, "customer_activity", ACTIVITY_COLUMNS, _activity(customers, now, rng))
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT setval(pg_get_serial_sequence('customers', 'id'), :n)"), {"n": customers})
            await conn.execute(text("ANALYZE"))
        else:
            await conn.execute(text("ANALYZE"))
    await db.close()


def _rss_kib() -> int:
    """Current resident set size (KiB), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so a later peak measures only what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _measure(url: str, now: datetime, label: str, use_tracemalloc: bool) -> None:
    db = await open_database(url)
    jobs = AlertJobs(store=SqlAlertStore(db.engine), taxonomy=load_builtin, deliverers={})
    for name, work in (("expiry scan", warn_expiring), ("churn scan", score_churn)):
        # Nothing is delivered: with no deliverer configured the outbox only gets rows; time the scan itself.
        before = _rss_kib()
        exact = _reset_peak_rss()
        if use_tracemalloc:
            tracemalloc.start()
        started = time.perf_counter()
        result = await work(jobs, now)
        seconds = time.perf_counter() - started
        growth = max(0, _peak_rss_kib() - before) / 1024
        traced = ""
        if use_tracemalloc:
            traced = f"  tracemalloc peak {tracemalloc.get_traced_memory()[1] / 2**20:6.1f} MiB"
            tracemalloc.stop()
        rss = f"peak RSS +{growth:6.1f} MiB" + ("" if exact else " (peak not resettable: process-wide)")
        print(f"{label:10s} {db.dialect:10s} {name:12s} {seconds:7.2f} s  {rss}{traced}  ({result})", flush=True)
    await db.close()


async def _run(url: str, customers: int, assignments: int, now: datetime, use_tracemalloc: bool) -> None:
    started = time.perf_counter()
    await _generate(url, customers, assignments, now)
    label = f"{customers // 1000}k/{assignments // 1000}k"
    print(
        f"{label:10s} generated {customers} customers, {assignments} assignments in "
        f"{time.perf_counter() - started:.1f} s (not counted)",
        flush=True,
    )
    await _measure(url, now, label, use_tracemalloc)


async def _run_postgres(url: str, customers: int, assignments: int, now: datetime, use_tracemalloc: bool) -> None:
    async with scratch_postgres(url) as scratch:
        await _run(scratch, customers, assignments, now, use_tracemalloc)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench alerts", description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--assignments", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server (scratch database)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    parser.add_argument("--tracemalloc", action="store_true", help="also report tracemalloc's peak (slower)")
    args = parser.parse_args(argv)
    if args.customers < 1 or args.assignments < args.customers:
        parser.error("need --customers >= 1 and --assignments >= --customers")
    now = datetime.now(UTC)
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{folder}/bench.db"
            asyncio.run(_run(url, args.customers, args.assignments, now, args.tracemalloc))
    if args.postgres:
        asyncio.run(_run_postgres(args.postgres, args.customers, args.assignments, now, args.tracemalloc))
    return 0
