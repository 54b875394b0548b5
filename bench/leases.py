"""Turn-lease cost per Teams turn: `python -m bench leases [--turns N] [--concurrency C …] [--postgres URL]`.

Linked-chat messages through the real app (real adapter, fake connector on loopback) on a fresh SQLite file and,
when reachable, a scratch PostgreSQL database: statements, write and read-only transactions per turn (counted
with storage.statements, the finished turns' lease writes included), and the process's CPU time per turn (the
client and fake connector run in the same process, so it is an upper bound of the server's). Sequential first,
then each concurrency. Counts do not depend on the machine's load; CPU and wall times do. Nothing is asserted;
tests/teams/test_turn_statements.py and tests/core/test_turn_leases.py check the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from app import DATABASE, TEAMS, create_app
from bench.scratch import scratch_postgres
from bench.teams import PAYLOAD, texts
from config import Settings
from core.chat.turns import TurnLeases
from core.records import CustomerDraft
from storage.statements import count_statements
from tests.teams.fake_connector import FakeConnector

POSTGRES_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
WARM_UP = 20


async def measure(database_url: str, turns: int, concurrencies: Sequence[int]) -> list[str]:
    """One app on `database_url`: link a chat, warm up, then `turns` messages per concurrency; a line each."""
    fake = TestServer(FakeConnector().app(), host="127.0.0.1")
    await fake.start_server()
    server = TestServer(create_app(Settings(database_url=database_url, scheduler_enabled=False)), host="127.0.0.1")
    await server.start_server()
    try:
        template: dict[str, Any] = json.loads(PAYLOAD.read_text(encoding="utf-8"))
        template["serviceUrl"] = str(fake.make_url("/"))
        name = f"租约客户-{time.time_ns()}"
        database = server.app[DATABASE]
        async with database.unit_of_work() as uow:
            await uow.customers.add(CustomerDraft(name=name), datetime.now(UTC))
        leases = server.app[TEAMS].claims
        assert isinstance(leases, TurnLeases)
        words = texts(WARM_UP + turns * len(concurrencies))
        run = time.time_ns()
        url = str(server.make_url("/api/messages"))
        lines = []
        async with ClientSession() as session:

            async def post(activity_id: str, text: str) -> None:
                async with session.post(url, json=dict(template, id=activity_id, text=text)) as response:
                    if response.status != 200:
                        raise RuntimeError(f"{activity_id}: HTTP {response.status}")

            await post(f"leases-link-{run}", f"link {name}")
            for i in range(WARM_UP):
                await post(f"leases-{run}-{i}", words[i])
            await leases.flush()
            for n, concurrency in enumerate(concurrencies):
                queue = iter(range(WARM_UP + n * turns, WARM_UP + (n + 1) * turns))

                async def worker() -> None:
                    for i in queue:  # noqa: B023 (each concurrency's workers run to the end before the next)
                        await post(f"leases-{run}-{i}", words[i])

                with count_statements(database.engine) as count:
                    cpu, wall = time.process_time(), time.perf_counter()
                    await asyncio.gather(*(worker() for _ in range(concurrency)))
                    await leases.flush()  # the last finished turns, written as they would be moments later
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                statements, writes, reads = count.per(turns)
                label = "sequential" if concurrency == 1 else f"{concurrency} in flight"
                lines.append(
                    f"  {label:<12} {statements:5.2f} statements  {writes:4.2f} writes  {reads:4.2f} reads  "
                    f"{cpu / turns * 1000:6.2f} ms CPU  {wall / turns * 1000:6.2f} ms wall   per turn"
                )
        return lines
    finally:
        await server.close()
        await fake.close()


async def run(turns: int, concurrencies: Sequence[int], postgres: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        lines = await measure(f"sqlite+aiosqlite:///{folder}/leases.db", turns, concurrencies)
    print(f"{turns} turns each; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("SQLite", *lines, sep="\n")
    if postgres:
        async with scratch_postgres(postgres, "leases_bench") as url:
            print("PostgreSQL", *await measure(url, turns, concurrencies), sep="\n")


def main(argv: Sequence[str]) -> int:
    """Entry point for `python -m bench leases`."""
    parser = argparse.ArgumentParser(prog="python -m bench leases", description=__doc__)
    parser.add_argument("--turns", type=int, default=100, help="messages per measurement (default 100)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 8, 16], help="requests in flight (default 1 8 16)"
    )
    parser.add_argument("--postgres", help=f"PostgreSQL server URL for a scratch database (default {POSTGRES_DEFAULT})")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    options = parser.parse_args(list(argv))
    if options.turns < 1 or min(options.concurrency) < 1:
        parser.error("--turns and --concurrency must be at least 1")
    postgres = (
        None
        if options.no_postgres
        else (options.postgres or os.environ.get("KEBIAO_TEST_POSTGRES_URL") or POSTGRES_DEFAULT)
    )
    asyncio.run(run(options.turns, options.concurrency, postgres))
    return 0
