"""Scale benchmark: every path a person waits on, with a million customers in PostgreSQL.

`python -m bench scale --postgres URL [--customers N] [--assignments N] [--events N] [--repeat R]` makes a scratch
database beside URL, migrates it, loads N customers, N tag assignments, N customer events and as many tag events
as customer events by COPY (bench/million.py; not timed), then starts `kebiao serve` as its own process on that
database (scheduler off, emulator mode, replies to a fake Bot Connector on loopback) and times over HTTP:
message-extension searches by name (exact, prefix and infix, Chinese), the summary card (`查看` a customer, and
the admin API's summary), `find` by tag expression with its next page, linked-conversation turns, the admin
API's lists (customer look-up, history, search first and deep page by keyset), the tag report, and once each
`kebiao alerts run-once` and `kebiao rules run-once`. It prints p50/p99 per path beside the targets, and the
server's resident memory before and after the burst. The scratch database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import ClientSession, ClientTimeout
from aiohttp.test_utils import TestServer

from bench.million import BRAND_CHARS, CITIES, Sizes, asyncpg_dsn, load, now_utc, person_name
from bench.scratch import scratch_postgres
from bench.teams import QUERY, percentile
from tests.teams.fake_connector import FakeConnector

PAYLOADS = Path(__file__).resolve().parent.parent / "tests" / "payloads" / "teams"
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-scale-admin-token"
TARGETS = {"message-extension search": 200.0, "summary card (查看)": 100.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def migrate(url: str) -> None:
    """Create the schema and the built-in taxonomy as `kebiao db upgrade` and the first start would."""
    from app import create_app
    from config import Settings

    server = TestServer(create_app(Settings(database_url=url, scheduler_enabled=False)), host="127.0.0.1")
    await server.start_server()
    await server.close()


class Server:
    """`kebiao serve` in its own process on the scratch database."""

    def __init__(self, url: str) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update(
            KEBIAO_DATABASE_URL=url, HOST="127.0.0.1", PORT=str(self.port), KEBIAO_ADMIN_TOKEN=TOKEN,
            KEBIAO_SCHEDULER="off", MICROSOFT_APP_ID="", MICROSOFT_APP_PASSWORD="",
        )  # fmt: skip
        self.env = env
        handle, name = tempfile.mkstemp(prefix="kebiao-scale-serve-", suffix=".log")
        os.close(handle)
        self.log = Path(name)
        with self.log.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, session: ClientSession, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kebiao serve exited with {self.process.returncode}; see {self.log}")
            try:
                async with session.get(self.base + "/readyz") as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("kebiao serve did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def once(self, *args: str) -> float:
        """Seconds one CLI command takes against the same database."""
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=self.env, capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"kebiao {' '.join(args)} failed: {done.stderr.decode()[-500:]}")
        return time.perf_counter() - began


async def timed(n: int, call: Callable[[int], Awaitable[None]]) -> list[float]:
    """Latencies (ms) of n sequential calls: what one person waits for."""
    latencies = []
    for i in range(n):
        began = time.perf_counter()
        await call(i)
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def row(name: str, latencies: list[float]) -> str:
    target = TARGETS.get(name)
    p99 = percentile(latencies, 0.99)
    verdict = "" if target is None else f"   target p99 ≤ {target:.0f} ms: {'met' if p99 <= target else 'MISSED'}"
    return f"  {name:<34} n={len(latencies):<4} p50 {statistics.median(latencies):8.1f} ms   p99 {p99:8.1f} ms{verdict}"


class Results(dict[str, list[float]]):
    """Latencies per path, each printed as soon as it is recorded."""

    def __setitem__(self, name: str, latencies: list[float]) -> None:
        super().__setitem__(name, latencies)
        print(row(name, latencies), flush=True)


class Paths:
    """The HTTP calls a person waits on, each checked for success."""

    def __init__(self, session: ClientSession, server: Server, connector_url: str, customers: int) -> None:
        self.session = session
        self.url = server.base + "/api/messages"
        self.admin = server.base + "/admin/v1"
        self.customers = customers
        self.message: dict[str, Any] = json.loads((PAYLOADS / "personal_message.json").read_text(encoding="utf-8"))
        self.message["serviceUrl"] = connector_url
        self.query: dict[str, Any] = json.loads(QUERY.read_text(encoding="utf-8"))
        self.query["serviceUrl"] = connector_url
        self.run = time.time_ns()
        self.seq = 0

    def _id(self) -> str:
        self.seq += 1
        return f"scale-{self.run}-{self.seq}"

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(self.url, json=body) as r:
            text = await r.text()
            if r.status != 200:
                raise RuntimeError(f"/api/messages: HTTP {r.status} {text[:300]}")
            return json.loads(text) if text else {}

    async def search(self, text: str) -> int:
        body = dict(self.query, id=self._id())
        body["value"] = dict(self.query["value"], parameters=[{"name": "customer", "value": text}])
        answer = await self.post(body)
        return len(answer.get("composeExtension", {}).get("attachments", []))

    async def say(self, text: str, conversation: str | None = None) -> None:
        body = dict(self.message, id=self._id(), text=text)
        if conversation is not None:
            body["conversation"] = dict(self.message["conversation"], id=conversation)
        await self.post(body)

    async def get(self, path: str, **params: str | int) -> Any:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.session.get(self.admin + path, params=params, headers=headers) as r:
            if r.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {r.status} {(await r.text())[:300]}")
            return await r.json()


def search_terms(n: int, seed: int, names: Sequence[str]) -> dict[str, list[str]]:
    """Names as people type them: whole names, the start of a name, a word from inside one, a person's name."""
    rng = random.Random(seed)
    return {
        "exact": [names[i % len(names)] for i in range(n)],
        "prefix": [rng.choice(CITIES) + rng.choice(BRAND_CHARS) for _ in range(n)],
        "infix": [rng.choice(BRAND_CHARS) + rng.choice(BRAND_CHARS) for _ in range(n)],
        "infix3": [rng.choice(BRAND_CHARS) + rng.choice(BRAND_CHARS) + "科" for _ in range(n)],
        "person": [person_name(rng) for _ in range(n)],
    }


async def measure(paths: Paths, server: Server, repeat: int, names: Sequence[str]) -> None:
    rng = random.Random(7)
    ids = [rng.randint(1, paths.customers) for _ in range(repeat)]
    terms = search_terms(repeat, 11, names)
    results = Results()
    hits: dict[str, int] = {}

    async def searches(kind: str) -> None:
        async def one(i: int) -> None:
            hits[kind] = hits.get(kind, 0) + await paths.search(terms[kind][i])

        results[f"search {kind}"] = await timed(repeat, one)

    for kind in terms:
        await searches(kind)
    results["message-extension search"] = [x for k in terms for x in results[f"search {k}"]]
    print("  hits per search kind: " + ", ".join(f"{k} {v / repeat:.1f}" for k, v in hits.items()), flush=True)
    results["summary card (查看)"] = await timed(repeat, lambda i: paths.say(f"查看 CRM-{ids[i]:07d}"))
    results["admin summary GET /customers/{id}"] = await timed(repeat, lambda i: paths.get(f"/customers/{ids[i]}"))
    exprs = ["VIP客户", "询价客户 AND 活跃客户", "华东 AND NOT 沉默客户", "(售后工单 OR 紧急工单) AND 重点客户"]
    results["find (page 1)"] = await timed(repeat, lambda i: paths.say(f"find {exprs[i % len(exprs)]}"))
    conversation = f"a:scale-linked-{paths.run}"
    await paths.say(f"link CRM-{ids[0]:07d}", conversation)
    phrases = ("麻烦发一下报价单", "这个型号多少钱", "我们想投诉一下售后", "合同下周签", "试用账号到期了吗")
    results["linked-conversation turn"] = await timed(
        repeat, lambda i: paths.say(f"{phrases[i % len(phrases)]}（{i}）", conversation)
    )
    results["admin GET /customers?q="] = await timed(
        repeat, lambda i: paths.get("/customers", q=terms["prefix"][i], limit=20)
    )
    results["admin customer history"] = await timed(repeat, lambda i: paths.get(f"/customers/{ids[i]}/history"))
    results["admin search page 1"] = await timed(
        repeat, lambda i: paths.get("/search", expr=exprs[i % len(exprs)], count=100)
    )

    async def deep(i: int) -> None:
        page = await paths.get("/search", expr=exprs[i % len(exprs)], count=100, after=paths.customers // 2)
        if not page["customers"]:
            raise RuntimeError("keyset page past the middle is empty")

    results["admin search keyset page (middle)"] = await timed(repeat, deep)
    results["admin tag report"] = await timed(max(3, repeat // 10), lambda i: paths.get("/reports/tags"))


def time_jobs(server: Server) -> None:
    """The scheduled jobs, once each, as `kebiao alerts run-once` and `kebiao rules run-once` run them."""
    print(f"  kebiao alerts run-once: {server.once('alerts', 'run-once'):.1f} s (once)", flush=True)
    print(f"  kebiao rules run-once:  {server.once('rules', 'run-once'):.1f} s (once)", flush=True)


async def run(url: str, sizes: Sizes, repeat: int, jobs: bool) -> None:
    """Load a scratch database beside `url`, measure, drop it."""
    async with scratch_postgres(url, "kebiao_scale") as scratch:
        await migrate(scratch)
        began = time.perf_counter()
        timings = await load(scratch, sizes, now_utc())
        print(
            f"loaded {sizes.customers:,} customers, {sizes.assignments:,} assignments, {sizes.events:,} events, "
            f"{sizes.tag_events:,} tag events in {time.perf_counter() - began:.0f} s (not timed below): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        )
        await serve_and_measure(scratch, repeat, jobs)


async def serve_and_measure(scratch: str, repeat: int, jobs: bool = True) -> None:
    """Start `kebiao serve` on the loaded database and time every path."""
    customers, names = await sample(scratch, repeat)
    print(f"{customers:,} customers in the database", flush=True)
    connector = FakeConnector()
    fake = TestServer(connector.app(), host="127.0.0.1")
    await fake.start_server()
    server = Server(scratch)
    try:
        async with ClientSession(timeout=ClientTimeout(total=300)) as session:
            await server.ready(session)
            paths = Paths(session, server, str(fake.make_url("/")), customers)
            await paths.search("预热")
            before = rss_mib(server.process.pid)
            print(f"load average {os.getloadavg()[0]:.2f}; kebiao serve RSS after start {before:.0f} MiB")
            await measure(paths, server, repeat, names)
            after = rss_mib(server.process.pid)
            await measure_quietly(paths, repeat, names[::-1])
            again = rss_mib(server.process.pid)
            print(
                f"kebiao serve RSS: {before:.0f} MiB at start, {after:.0f} MiB after the burst, "
                f"{again:.0f} MiB after a second burst; load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            if jobs:
                time_jobs(server)
    finally:
        server.stop()
        await fake.close()


async def sample(url: str, n: int) -> tuple[int, list[str]]:
    """(the highest customer id, the names of n customers spread over the table)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        top = int(await conn.fetchval("SELECT max(id) FROM customers") or 0)
        ids = [1 + (k * 7919) % max(1, top) for k in range(n)]
        names = [r["name"] for r in await conn.fetch("SELECT name FROM customers WHERE id = ANY($1::bigint[])", ids)]
        return top, names or ["-"]
    finally:
        await conn.close()


async def measure_quietly(paths: Paths, repeat: int, names: Sequence[str]) -> None:
    """A second burst of searches and turns on other customers, to see whether memory keeps growing."""
    rng = random.Random(99)
    for terms in search_terms(repeat, 23, names).values():
        for name in terms:
            await paths.search(name)
    for _ in range(repeat):
        await paths.say(f"查看 CRM-{rng.randint(1, paths.customers):07d}")


def main(argv: Sequence[str]) -> int:
    """Entry point for `python -m bench scale`."""
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__)
    parser.add_argument(
        "--postgres", required=True, help="PostgreSQL URL naming the server (a scratch database is made)"
    )
    parser.add_argument("--customers", type=int, default=100_000, help="customers to load (default 100,000)")
    parser.add_argument("--assignments", type=int, default=1_000_000, help="tag assignments (default 1,000,000)")
    parser.add_argument("--events", type=int, default=100_000, help="customer events, and as many tag events")
    parser.add_argument("--repeat", type=int, default=100, help="calls per path (default 100)")
    parser.add_argument(
        "--loaded", action="store_true", help="URL names a database loaded by an earlier run: measure it as it is"
    )
    parser.add_argument(
        "--no-jobs", dest="jobs", action="store_false", help="leave out the (long) alert and rule job timings"
    )
    options = parser.parse_args(argv)
    if not options.postgres.startswith("postgresql"):
        parser.error("--postgres must be a postgresql+asyncpg:// URL")
    if options.loaded:
        asyncio.run(serve_and_measure(options.postgres, options.repeat, options.jobs))
        return 0
    sizes = Sizes(options.customers, options.assignments, options.events, options.events)
    asyncio.run(run(options.postgres, sizes, options.repeat, options.jobs))
    return 0
