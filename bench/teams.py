"""Teams turn benchmark: `/api/messages` end to end (real adapter, SQLite, fake connector on loopback).

`python -m bench teams [--turns N] [--rounds K] [--concurrency C] [--rate R] [--seconds S] [--database URL]`
prints turns/s and p50/p99 latency of personal-chat messages that hit tags in a linked chat, beside a baseline in
the same process doing the same minimal work (K rounds of a burst of each, alternating; the ratio is of the
totals): a bare aiohttp route that parses the activity JSON, runs jieba over
the text, inserts one row into the same database and POSTs one reply to the same fake connector. Then p99 at a
steady rate, and the latency of message-extension query invokes. Beside the ratio it prints each side's CPU per
turn: this process's (the turn, with the load and the fake connector both sides share) and, for a PostgreSQL on
this host, its processes'. Nothing is asserted.

Two latencies are printed per turn: `http` is the POST /api/messages round trip; `e2e` is from the POST
until the suggestion card reached the fake connector (the bot replies inside the turn, so e2e ≤ http).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import jieba
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from sqlalchemy import Column, MetaData, String, Table, Text, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app import DATABASE, create_app, settle_heap
from bench.cpu import CpuClock
from bench.scratch import scratch_postgres
from config import Settings
from core.loopback import is_loopback_host
from core.records import CustomerDraft
from tests.teams.fake_connector import FakeConnector

PAYLOADS = Path(__file__).resolve().parent.parent / "tests" / "payloads" / "teams"
PAYLOAD = PAYLOADS / "personal_message.json"
QUERY = PAYLOADS / "compose_extension_query.json"
PHRASES = ("麻烦发一下报价单", "这个型号多少钱", "请问价格怎么算", "想了解一下询价流程", "能不能再报个价")

Send = Callable[[int], Awaitable[None]]
WARM_UP = 100  # turns of each before the rounds

baseline_metadata = MetaData()
baseline_turns = Table(
    "bench_baseline_turns",
    baseline_metadata,
    Column("activity_id", String(200), primary_key=True),
    Column("text", Text, nullable=False),
    Column("tokens", Text, nullable=False),
)


def baseline_app(engine: AsyncEngine, client: ClientSession) -> web.Application:
    """The least a turn must do: parse the activity, jieba over the text, store one row, POST one reply."""

    async def turn(request: web.Request) -> web.Response:
        activity = await request.json()
        words = jieba.lcut(activity["text"])
        async with engine.begin() as conn:
            row = {"activity_id": activity["id"], "text": activity["text"], "tokens": " ".join(words)}
            await conn.execute(baseline_turns.insert().values(**row))
        conversation = activity["conversation"]["id"]
        reply = {
            "type": "message",
            "text": f"{len(words)} words",
            "replyToId": activity["id"],
            "conversation": activity["conversation"],
            "from": activity["recipient"],
            "recipient": activity["from"],
        }
        url = f"{activity['serviceUrl'].rstrip('/')}/v3/conversations/{conversation}/activities/{activity['id']}"
        async with client.post(url, json=reply) as answer:
            if answer.status >= 300:
                raise web.HTTPBadGateway(reason=f"connector answered {answer.status}")
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/api/messages", turn)
    return app


class TimedConnector(FakeConnector):
    """The fake connector, noting when the reply to each incoming activity id arrived and counting cards.

    It keeps no request bodies: a run's thousands of them, kept in the same process, made every full garbage
    collection walk them, and the turns that happened to set one off paid for it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, float] = {}
        self.cards = 0

    async def _record(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body: dict[str, Any] = await request.json()
        self.cards += bool(body.get("attachments"))
        return body, None

    async def _send(self, request: web.Request) -> web.Response:
        reply_to = request.match_info.get("activity_id", "")
        self.arrived.setdefault(reply_to, time.perf_counter())
        return await super()._send(request)


async def _offset(send: Send, first: int, i: int) -> None:
    await send(first + i)


def texts(n: int) -> list[str]:
    """Distinct messages that each hit a suggest tag (询价客户)."""
    return [f"{PHRASES[i % len(PHRASES)]}，第{i}号订单" for i in range(n)]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def burst(send: Send, n: int, concurrency: int) -> tuple[float, list[float]]:
    """Send n requests with `concurrency` in flight; (turns/s, latencies in ms)."""
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            start = time.perf_counter()
            await send(i)
            latencies.append((time.perf_counter() - start) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - began), latencies


async def steady(send: Send, start: int, rate: float, seconds: float) -> list[float]:
    """Open-loop load at `rate` requests/s for `seconds`; latencies in ms."""
    latencies: list[float] = []

    async def one(i: int) -> None:
        began = time.perf_counter()
        await send(i)
        latencies.append((time.perf_counter() - began) * 1000)

    tasks = []
    t0 = time.perf_counter()
    for k in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, t0 + k / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(start + k)))
    await asyncio.gather(*tasks)
    return latencies


def local_postgres(url: str) -> bool:
    """Whether `url` names a PostgreSQL server on this host, whose processes' CPU can be read here."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "postgresql" and (not parsed.host or is_loopback_host(parsed.host))


def _added(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] + b[0], a[1] + b[1]


def cpu_line(turns: int, teams: tuple[float, float], base: tuple[float, float], postgres: bool) -> str:
    """CPU per turn of each side: this process (Kebiao or the baseline, the load and the fake connector) and,
    for a PostgreSQL on this host, its processes; and the ratio baseline/teams of the totals."""
    t_here, t_db, b_here, b_db = (1000 * v / turns for v in (*teams, *base))
    ratio = (b_here + b_db) / (t_here + t_db) if t_here + t_db else float("nan")
    if not postgres:
        return (
            f"CPU per turn (this process): teams {t_here:.2f} ms, baseline {b_here:.2f} ms; "
            f"baseline/teams {ratio:.3f}"
        )
    return (
        f"CPU per turn: teams {t_here:.2f} ms here + {t_db:.2f} ms PostgreSQL, baseline {b_here:.2f} + {b_db:.2f} ms; "
        f"baseline/teams {ratio:.3f}"
    )


def line(name: str, rate: float, latencies: list[float]) -> str:
    return (
        f"{name:<28} {rate:8.1f} turns/s   p50 {statistics.median(latencies):7.1f} ms   "
        f"p99 {percentile(latencies, 0.99):7.1f} ms"
    )


def spread(name: str, latencies: list[float]) -> str:
    return (
        f"  {name:<26} p50 {statistics.median(latencies):7.1f} ms   p99 {percentile(latencies, 0.99):7.1f} ms"
        f"   max {max(latencies):7.1f} ms"
    )


async def run(
    turns: int, concurrency: int, rate: float, seconds: float, database: str | None = None, rounds: int = 3
) -> None:
    """Run the benchmark; a PostgreSQL URL only names the server: a scratch database is made and dropped."""
    if database is not None and database.startswith("postgresql"):
        async with scratch_postgres(database) as scratch:
            await _run(turns, concurrency, rate, seconds, scratch, rounds)
        return
    await _run(turns, concurrency, rate, seconds, database, rounds)


async def _run(
    turns: int, concurrency: int, rate: float, seconds: float, database: str | None, rounds: int
) -> None:
    connector = TimedConnector()
    fake = TestServer(connector.app(), host="127.0.0.1")
    await fake.start_server()
    template: dict[str, Any] = json.loads(PAYLOAD.read_text(encoding="utf-8"))
    template["serviceUrl"] = str(fake.make_url("/"))
    words = texts(WARM_UP + rounds * turns + int(rate * seconds) + 1)
    jieba.setLogLevel(60)
    jieba.lcut("预热")

    query: dict[str, Any] = json.loads(QUERY.read_text(encoding="utf-8"))
    query["serviceUrl"] = template["serviceUrl"]
    sent: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url_db = database or f"sqlite+aiosqlite:///{tmp}/bench.db"
        settings = Settings(database_url=url_db, scheduler_enabled=False)
        app = create_app(settings)
        app.on_startup.append(settle_heap)  # as `kebiao serve` does
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        # One pooled connection per turn in flight, as Kebiao keeps: with the default five, the baseline opened
        # and closed a connection for the sixth to eighth turn in flight all through a burst.
        engine = create_async_engine(url_db, pool_size=max(5, concurrency))
        async with engine.begin() as conn:
            await conn.run_sync(baseline_metadata.create_all)
        bare_client = ClientSession()
        bare_server = TestServer(baseline_app(engine, bare_client), host="127.0.0.1")
        await bare_server.start_server()
        name = f"ABC公司-{time.time_ns()}"  # a reused PostgreSQL database keeps earlier runs' customers
        async with server.app[DATABASE].unit_of_work() as uow:
            await uow.customers.add(CustomerDraft(name=name), datetime.now(UTC))
        async with ClientSession() as session:
            url = str(server.make_url("/api/messages"))
            run_id = time.time_ns()

            async def teams(i: int) -> None:
                activity_id = f"bench-{run_id}-{i}"
                body = dict(template, id=activity_id, text=words[i])
                sent[activity_id] = time.perf_counter()
                async with session.post(url, json=body) as response:
                    if response.status != 200:
                        raise RuntimeError(f"turn {i}: HTTP {response.status}")

            def e2e(first: int, n: int) -> list[float]:
                ids = [f"bench-{run_id}-{i}" for i in range(first, first + n)]
                return [(connector.arrived[a] - sent[a]) * 1000 for a in ids if a in connector.arrived]

            async def invoke(i: int) -> None:
                body = dict(query, id=f"bench-query-{run_id}-{i}")
                body["value"] = dict(query["value"], parameters=[{"name": "query", "value": "ABC"}])
                async with session.post(url, json=body) as response:
                    if response.status != 200:
                        raise RuntimeError(f"invoke {i}: HTTP {response.status}")
                    await response.read()

            bare_url = str(bare_server.make_url("/api/messages"))

            async def bare_send(i: int) -> None:
                body = dict(template, id=f"bare-{run_id}-{i}", text=words[i])
                async with session.post(bare_url, json=body) as r:
                    if r.status != 200:
                        raise RuntimeError(f"baseline turn {i}: HTTP {r.status}")

            link = dict(template, id=f"bench-link-{run_id}", text=f"link {name}")
            async with session.post(url, json=link) as r:
                assert r.status == 200
            # Warm-up for both: jieba's dictionary, every pooled connection and its prepared statements.
            await burst(teams, WARM_UP, concurrency)
            await burst(lambda i: bare_send(rounds * turns + i), WARM_UP, concurrency)
            base = WARM_UP
            # Rounds alternate the two, so that a machine whose speed drifts during the run (a shared host's
            # neighbours, the database's background work) weighs on both alike.
            lat_t: list[float] = []
            lat_b: list[float] = []
            e2e_t: list[float] = []
            took_t = took_b = 0.0
            clock = CpuClock(postgres=local_postgres(url_db))
            cpu_t = cpu_b = (0.0, 0.0)
            for k in range(rounds):
                first = base + k * turns
                before = clock.now()
                kebiao, lat = await burst(partial(_offset, teams, first), turns, concurrency)
                cpu_t = _added(cpu_t, clock.since(before))
                took_t, lat_t, e2e_t = took_t + turns / kebiao, lat_t + lat, e2e_t + e2e(first, turns)
                before = clock.now()
                bare, lat = await burst(partial(_offset, bare_send, k * turns), turns, concurrency)
                cpu_b = _added(cpu_b, clock.since(before))
                took_b, lat_b = took_b + turns / bare, lat_b + lat
                print(f"round {k + 1}: teams {kebiao:.1f}, baseline {bare:.1f} turns/s, ratio {kebiao / bare:.3f}")
            rate_t, rate_b = rounds * turns / took_t, rounds * turns / took_b
            start = base + rounds * turns
            steady_lat = await steady(teams, start, rate, seconds)
            e2e_s = e2e(start, int(rate * seconds))
            _, lat_q = await burst(invoke, 50, 1)
        cards = connector.cards
        backend = settings.database_url.split(":")[0]
        print(f"{backend}; turns={turns} x {rounds} rounds, concurrency={concurrency}; cards delivered: {cards}")
        print(line("teams /api/messages (http)", rate_t, lat_t))
        print(spread("e2e (POST → card at connector)", e2e_t))
        print(line("baseline (parse+jieba+row+reply)", rate_b, lat_b))
        print(f"ratio teams/baseline: {rate_t / rate_b:.3f}   (target ≥ 0.5; load average {os.getloadavg()[0]:.2f})")
        print(cpu_line(rounds * turns, cpu_t, cpu_b, clock.postgres))
        print(f"steady {rate:.0f} turns/s for {seconds:.0f} s ({len(steady_lat)} turns):")
        print(spread("http", steady_lat))
        print(spread("e2e", e2e_s))
        print(spread("message-extension query", lat_q))
        await server.close()
        await bare_server.close()
        await bare_client.close()
        await engine.dispose()
    await fake.close()


def main(argv: Sequence[str]) -> int:
    """Entry point for `python -m bench teams`."""
    parser = argparse.ArgumentParser(prog="python -m bench teams", description=__doc__)
    parser.add_argument("--turns", type=int, default=300, help="messages per burst (default 300)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="bursts of each, alternating Kebiao and the baseline (default 3)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--rate", type=float, default=50.0, help="steady rate, turns/s (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady duration (default 10)")
    parser.add_argument(
        "--database",
        help="database URL (default: a temporary SQLite file); for PostgreSQL a scratch database is created beside it",
    )
    options = parser.parse_args(argv)
    asyncio.run(
        run(options.turns, options.concurrency, options.rate, options.seconds, options.database, options.rounds)
    )
    return 0
