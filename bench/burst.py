"""Teams burst on SQLite: `python -m bench burst [--turns N] [--concurrency C] [--rounds R] [--postgres URL]`.

N personal-chat messages to a linked chat (each suggests a tag), C in flight, through the real app on a fresh
SQLite file: p50/p99/max of the HTTP round trip and end to end (until the card reached the fake connector).
Printed for SQLite as shipped (write transactions take turns on the in-process queue, storage.writer), for
the same app with the queue switched off in this process (SQLite's busy handler polls the write lock: the
baseline), and for PostgreSQL when reachable. Variants alternate for R rounds so a busy machine hurts each
alike; the percentiles are over all rounds. Nothing is asserted; tests/storage/test_sqlite_writer.py checks
that writes never wait on SQLite's lock and none is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from app import DATABASE, create_app, settle_heap
from bench.scratch import scratch_postgres
from bench.teams import PAYLOAD, TimedConnector, burst, percentile, texts
from config import Settings
from core.records import CustomerDraft
from storage.writer import SqliteWriter

POSTGRES_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
VARIANTS = ("sqlite", "sqlite-busy-wait", "postgres")


@contextlib.contextmanager
def busy_wait() -> Iterator[None]:
    """The baseline: write transactions skip the in-process queue and meet SQLite's busy handler instead.

    Both kinds skip it: those SQLAlchemy begins (its begin hook) and the one-trip ones (storage.prepared)."""
    acquire = SqliteWriter.acquire

    async def skip(self: SqliteWriter, dbapi_connection: Any) -> None:
        return None

    SqliteWriter.acquire = skip  # type: ignore[method-assign]
    try:
        yield
    finally:
        SqliteWriter.acquire = acquire  # type: ignore[method-assign]


async def one_burst(database_url: str, turns: int, concurrency: int) -> tuple[float, list[float], list[float]]:
    """A fresh app on `database_url`: link a chat, warm up, burst; (turns/s, http ms, e2e ms)."""
    connector = TimedConnector()
    fake = TestServer(connector.app(), host="127.0.0.1")
    await fake.start_server()
    app = create_app(Settings(database_url=database_url, scheduler_enabled=False))
    app.on_startup.append(settle_heap)  # as `kebiao serve` does
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        template: dict[str, Any] = json.loads(PAYLOAD.read_text(encoding="utf-8"))
        template["serviceUrl"] = str(fake.make_url("/"))
        name = f"突发客户-{time.time_ns()}"
        async with server.app[DATABASE].unit_of_work() as uow:
            await uow.customers.add(CustomerDraft(name=name), datetime.now(UTC))
        words = texts(turns + 20)
        run = time.time_ns()
        sent: dict[str, float] = {}
        url = str(server.make_url("/api/messages"))
        async with ClientSession() as session:

            async def turn(i: int) -> None:
                activity_id = f"burst-{run}-{i}"
                sent[activity_id] = time.perf_counter()
                async with session.post(url, json=dict(template, id=activity_id, text=words[i])) as response:
                    if response.status != 200:
                        raise RuntimeError(f"turn {i}: HTTP {response.status}")

            async with session.post(url, json=dict(template, id=f"burst-link-{run}", text=f"link {name}")) as r:
                if r.status != 200:
                    raise RuntimeError(f"linking the chat: HTTP {r.status}")
            await burst(turn, 20, concurrency)  # warm-up: jieba, connections, caches
            rate, http = await burst(lambda i: turn(20 + i), turns, concurrency)
        ids = [f"burst-{run}-{20 + i}" for i in range(turns)]
        e2e = [(connector.arrived[a] - sent[a]) * 1000 for a in ids if a in connector.arrived]
        return rate, http, e2e
    finally:
        await server.close()
        await fake.close()


async def run(turns: int, concurrency: int, rounds: int, postgres: str | None) -> None:
    results: dict[str, tuple[list[float], list[float], list[float]]] = {v: ([], [], []) for v in VARIANTS}
    variants = [v for v in VARIANTS if v != "postgres" or postgres]
    for _ in range(rounds):
        for variant in variants:
            with tempfile.TemporaryDirectory() as folder:
                if variant == "postgres" and postgres:
                    async with scratch_postgres(postgres, "kebiao_burst") as url:
                        outcome = await one_burst(url, turns, concurrency)
                else:
                    with busy_wait() if variant == "sqlite-busy-wait" else contextlib.nullcontext():
                        outcome = await one_burst(f"sqlite+aiosqlite:///{folder}/burst.db", turns, concurrency)
            rates, http, e2e = results[variant]
            rates.append(outcome[0])
            http.extend(outcome[1])
            e2e.extend(outcome[2])
    print(f"{turns} turns x {rounds} rounds, {concurrency} in flight; load average {_load()}")
    for variant in variants:
        rates, http, e2e = results[variant]
        print(
            f"  {variant:<17} {statistics.mean(rates):6.1f} turns/s   http p50 {statistics.median(http):7.1f} ms  "
            f"p99 {percentile(http, 0.99):7.1f} ms  max {max(http):7.1f} ms   e2e p99 {percentile(e2e, 0.99):7.1f} ms"
        )
    queued, polled = results["sqlite"][1], results["sqlite-busy-wait"][1]
    print(
        f"  SQLite p99 with the write queue / busy wait: {percentile(queued, 0.99) / percentile(polled, 0.99):.2f}x; "
        f"p99/p50: {percentile(queued, 0.99) / statistics.median(queued):.1f} vs "
        f"{percentile(polled, 0.99) / statistics.median(polled):.1f}"
    )


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str]) -> int:
    """Entry point for `python -m bench burst`."""
    parser = argparse.ArgumentParser(prog="python -m bench burst", description=__doc__)
    parser.add_argument("--turns", type=int, default=200, help="messages per burst (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per variant, alternating (default 3)")
    parser.add_argument("--postgres", help=f"PostgreSQL server URL for a scratch database (default {POSTGRES_DEFAULT})")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    options = parser.parse_args(list(argv))
    postgres = None if options.no_postgres else (
        options.postgres or os.environ.get("KEBIAO_TEST_POSTGRES_URL") or POSTGRES_DEFAULT
    )
    asyncio.run(run(options.turns, options.concurrency, options.rounds, postgres))
    return 0
