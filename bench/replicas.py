"""Replica benchmark: three `kebiao serve` behind HAProxy (deploy/haproxy.cfg as shipped) on one PostgreSQL.

`python -m bench replicas [--rate R] [--duration S] [--kill-at S] [--conversations C] [--customers N]
[--postgres URL]` starts,
on this machine, what docs/deployment.md describes: a scratch PostgreSQL database, three replicas
(`python -m cli serve`, emulator mode on loopback, every scheduler on), HAProxy started with
deploy/haproxy.cfg (only its addresses come from the environment) and the fake Bot Connector. It links C
conversations to C customers, then sends R linked-conversation messages per second for S seconds through
HAProxy (each message auto-applies its own tag) and kills one replica with SIGKILL at --kill-at seconds.

The database first holds --customers customers (default 20,000, ten tags each, none expiring), vacuumed and
analyzed, as a deployment's database is: on an empty database PostgreSQL keeps plans made for a table of a few
rows while the run adds thousands (`background`); `--customers 0` measures that case.

It prints p50/p99 of the HTTP round trip and end to end (POST until the card reached the fake connector),
beside a same-run baseline sent straight to one replica without HAProxy; how many messages were
acknowledged with 200; acknowledged messages without their tag (lost: must be 0); after resending the
unacknowledged ones (as Teams retries), messages tagged exactly once, never or twice; and the alerts the three
schedulers sent (expiring tags seeded so the expiry job fires): outbox rows, sends, and sends beyond one per
alert. Nothing is asserted here; tests/deploy/test_replicas.py asserts a short run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import functools
import itertools
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web
from aiohttp.test_utils import TestServer
from botbuilder.schema import Activity
from sqlalchemy import select

from bench.cpu import host_cpu, machine_cpu, named_cpu, process_cpu
from bench.million import copy_in, customer_rows
from bench.scratch import scratch_postgres
from bots.teams.notifier import TEAMS_CHANNEL
from bots.teams.references import StoredReference
from core.records import CustomerDraft
from core.taxonomy.store import ensure_taxonomy
from core.types import Role, Source, User
from storage import tables as t
from storage.channels import SqlChannelStore
from storage.database import open_database
from tagging.loader import load_taxonomy_text
from tagging.normaliser import name_key
from tests.teams.crash_harness import taxonomy_yaml  # one auto-apply tag per sku keyword, as the crash run uses

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_CONFIG = ROOT / "deploy" / "haproxy.cfg"
PAYLOAD = ROOT / "tests" / "payloads" / "teams" / "personal_message.json"
POSTGRES_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
REPLICAS = 3
READY_SECONDS = 180.0
MANAGER = "bench-manager"
OWNERS = 5  # owners of the customers whose tags expire (plus the manager: the expiry alerts' recipients)
EXPIRING = 20  # customers with a tag expiring within the warning window
WINDOW = 10.0  # seconds per p99 of the per-window line


def cpu_snapshot(replicas: Sequence[Replica]) -> dict[str, float | None]:
    """CPU seconds so far of each replica, PostgreSQL, HAProxy, this process and the whole host."""
    snapshot: dict[str, float | None] = {
        r.name: process_cpu(r.process.pid) if r.process is not None else None for r in replicas
    }
    snapshot.update(named_cpu("postgres", "haproxy"), bench=time.process_time(), host=machine_cpu())
    return snapshot


def cpu_line(
    before: dict[str, float | None], after: dict[str, float | None], seconds: float, killed: Sequence[str] = ()
) -> str:
    """Cores each part used between two snapshots taken `seconds` apart; a killed replica's figure runs to its
    kill but is averaged over the whole run, and says so."""

    def cores(key: str) -> str:
        start, end = before.get(key), after.get(key)
        if start is None or end is None:
            return "unknown"
        return f"{(end - start) / seconds:.2f}" + (" (killed)" if key in killed else "")

    replicas = ", ".join(cores(k) for k in before if k.startswith("kebiao"))
    return (
        f"  CPU, cores: replicas {replicas}; PostgreSQL {cores('postgres')}; HAProxy {cores('haproxy')}; "
        f"load and fake connector {cores('bench')}; host {cores('host')} of {os.cpu_count()}"
    )


def haproxy_path() -> str | None:
    """HAProxy from PATH or Debian's /usr/sbin (not always on a user's PATH)."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Phase:
    """Latencies (ms) of one load phase: HTTP round trip and end to end."""

    name: str
    http: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    # (second of the phase the message was sent, its HTTP latency): where in the run a tail came from
    timed: list[tuple[float, float]] = field(default_factory=list)
    # (busy cores, stolen cores) of the host in each window: whether a high window was the machine's
    host: list[tuple[float, float]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for label, values in (("http", self.http), ("e2e", self.e2e)):
            if values:
                out.append(
                    f"  {self.name:<30} {label:<4} p50 {statistics.median(values):7.1f} ms   "
                    f"p99 {percentile(values, 0.99):7.1f} ms   max {max(values):8.1f} ms   ({len(values)})"
                )
        windows = self.windows()
        if len(windows) > 1:
            out.append(f"  {'':<30} http p99 per {WINDOW:g} s: " + ", ".join(f"{v:.0f}" for v in windows) + " ms")
        if self.host:
            busy = ", ".join(f"{b:.2f}" for b, _ in self.host)
            stolen = ", ".join(f"{s:.2f}" for _, s in self.host)
            out.append(f"  {'':<30} host cores busy per {WINDOW:g} s: {busy} (stolen by the hypervisor: {stolen})")
        return out

    def near(self, second: float, span: float = 1.0) -> str:
        """The messages sent within `span` seconds of `second` of the phase (the kill), and the slowest of them:
        one the killed replica held is answered once another replica took its lease over."""
        around = [ms for sent, ms in self.timed if abs(sent - second) <= span]
        slowest = f"{max(around):.1f} ms" if around else "none"
        return f"  {'':<30} sent within {span:g} s of the kill: {len(around)}, the slowest answered in {slowest}"

    def windows(self) -> list[float]:
        """HTTP p99 of each WINDOW seconds of the phase, by the second each message was sent."""
        by: dict[int, list[float]] = {}
        for second, ms in self.timed:
            by.setdefault(int(second // WINDOW), []).append(ms)
        most = max((len(v) for v in by.values()), default=0)
        # The last message of a run can open a window of its own: a window of a few is no p99.
        return [percentile(by[w], 0.99) for w in sorted(by) if len(by[w]) * 10 >= most]


@dataclass(frozen=True)
class ReplicaOutcome:
    """What a replica run left behind; the test asserts on it, the benchmark prints it."""

    messages: int
    acked: int  # answered 200 during the run
    not_acked: tuple[str, ...]  # answered otherwise or not at all (resent afterwards, as Teams retries)
    lost_acked: tuple[str, ...]  # acknowledged with 200 but no tag stored before the resend: must be empty
    tagged_once: int  # after the resend
    untagged: tuple[str, ...]
    tagged_twice: tuple[str, ...]
    cards_twice: tuple[str, ...]
    alerts: int  # outbox rows
    alerts_unsent: tuple[str, ...]  # outbox rows not `sent` with exactly one attempt
    alert_sends: int  # card POSTs the connector received in the alert conversations
    alert_extra_sends: int  # sends beyond one per outbox row (per recipient conversation)
    killed: bool
    phases: tuple[Phase, ...]
    statuses: tuple[tuple[int, int], ...]
    cpu: str = ""  # cores each part used during the HAProxy run (cpu_line)

    def summary(self) -> str:
        return (
            f"{self.messages} messages, {self.acked} acknowledged, {len(self.not_acked)} not; lost acknowledged "
            f"{len(self.lost_acked)}; after resend tagged once {self.tagged_once}, never {len(self.untagged)}, "
            f"twice {len(self.tagged_twice)}; cards twice {len(self.cards_twice)}; alerts {self.alerts} rows, "
            f"{self.alert_sends} sends, {self.alert_extra_sends} extra, unsent {len(self.alerts_unsent)}"
        )


class TimedConnector:
    """The fake Bot Connector: records each card's conversation, the activity it answers and when it arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.cards: Counter[str] = Counter()  # reply-to activity id → cards
        self.alerts: Counter[str] = Counter()  # alert conversation → sends
        self.alert_bodies: Counter[str] = Counter()
        self._ids = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/conversations", self._create)
        app.router.add_post("/v3/conversations/{conversation_id}/activities", self._send)
        app.router.add_post("/v3/conversations/{conversation_id}/activities/{activity_id}", self._send)
        app.router.add_put("/v3/conversations/{conversation_id}/activities/{activity_id}", self._update)
        return app

    def _id(self) -> str:
        self._ids += 1
        return f"1:{self._ids}"

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        conversation = request.match_info["conversation_id"]
        reply_to = request.match_info.get("activity_id", "")
        if conversation.startswith("a:alert-"):
            self.alerts[conversation] += 1
            self.alert_bodies[conversation + json.dumps(body.get("attachments"), sort_keys=True)] += 1
        elif body.get("attachments") and reply_to:
            self.arrived.setdefault(reply_to, time.perf_counter())
            self.cards[reply_to] += 1
        return web.json_response({"id": self._id()}, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"id": request.match_info["activity_id"]})

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        member = (body.get("members") or [{}])[0].get("id", "")
        return web.json_response({"id": f"a:alert-created-{member}", "activityId": ""}, status=201)


def customer_name(c: int) -> str:
    return f"副本客户{c:03d}"


async def seed(
    url: str, conversations: int, tags: int, service_url: str, template: dict[str, Any], customers: int = 0
) -> None:
    """Migrate; `customers` background customers (`background`); taxonomy; chat customers; customers whose tags
    expire in 3 days; Teams addresses of recipients."""
    now = datetime.now(UTC)
    database = await open_database(url)
    try:
        if customers:
            await background(url, customers, tags, now)
        async with database.unit_of_work() as uow:
            await ensure_taxonomy(uow, load_taxonomy_text(taxonomy_yaml(tags)), "bench", now - timedelta(days=30))
            await uow.users.save(User(MANAGER, Role.MANAGER, ()), now)
            for c in range(conversations):
                await uow.customers.add(CustomerDraft(customer_name(c), company="副本"), now - timedelta(days=1))
            for e in range(EXPIRING):
                owner = f"bench-owner-{e % OWNERS}"
                customer = await uow.customers.add(
                    CustomerDraft(f"到期客户{e:03d}", owner=owner), now - timedelta(days=60)
                )
                await uow.assignments.insert_active(
                    customer.id, "product", f"产品{e:04d}", Source.MANUAL, owner,
                    now - timedelta(days=30), now + timedelta(days=3),
                )
        channels = SqlChannelStore(database.engine)
        for n, user in enumerate([MANAGER, *(f"bench-owner-{o}" for o in range(OWNERS))]):
            activity = Activity().deserialize(dict(template, serviceUrl=service_url))
            stored = StoredReference.from_activity(activity)
            reference = json.loads(stored.reference_json)
            reference["serviceUrl"] = stored.service_url
            reference["conversation"]["id"] = f"a:alert-{n}"
            await channels.save_reference(TEAMS_CHANNEL, user, reference, stored.tenant_id, now)
    finally:
        await database.close()


BACKGROUND_TAGS = 10  # tags each background customer holds


async def background(url: str, customers: int, tags: int, now: datetime) -> None:
    """Customers already in the (migrated, empty) database, as a deployment's would be: `customers` of them with
    BACKGROUND_TAGS of the bench's tags each, none expiring, with no owner or contract (no alert is theirs);
    loaded as `bench scale` loads its million (bench.million.copy_in: counted as the tag-count triggers keep
    them, then VACUUM ANALYZE, as autovacuum leaves a database in use).

    PostgreSQL plans a prepared statement (and a trigger's) for the table sizes its statistics give when it is
    first run, and keeps that plan until the table is analyzed again. On an empty, never analyzed database the
    turn's reads and the tag-count trigger are planned for a handful of rows, and scan every active assignment
    while the bench adds thousands in a minute."""
    people = ((i, name, key, company, "", region, crm, None, None, "{}", created, updated)
              for i, name, key, company, _owner, region, crm, _wecom, _contract, _attrs, created, updated
              in customer_rows(customers, now, seed=13))
    held = (
        (c * BACKGROUND_TAGS + k, c, "product", name_key(name), name, "active", "keyword", "bench",
         now - timedelta(days=30), None, None)
        for c in range(1, customers + 1)
        for k, name in enumerate(f"产品{(c * 7 + k) % tags:04d}" for k in range(BACKGROUND_TAGS))
    )
    await copy_in(url, {"customers": people, "tag_assignments": held})


class Replica:
    """One `python -m cli serve` on a free loopback port, as kebiao@PORT.service runs it."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = dict(env, PORT=str(self.port))
        self.log = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve"],
                env=self.env, cwd=self.log.parent, stdout=log, stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])


async def wait_ready(url: str, watch: Sequence[Replica | subprocess.Popen[bytes]], what: str) -> None:
    """Until GET url/readyz answers 200; fails early when a watched process exits."""
    deadline = time.monotonic() + READY_SECONDS
    async with ClientSession(timeout=ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            for item in watch:
                process = item.process if isinstance(item, Replica) else item
                if process is None or process.poll() is not None:
                    raise RuntimeError(f"{what} exited before it was ready")
            with contextlib.suppress(ClientError, asyncio.TimeoutError):
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{what} was not ready in {READY_SECONDS:.0f} s")


@contextlib.asynccontextmanager
async def haproxy(replicas: Sequence[Replica], workdir: Path) -> AsyncIterator[str]:
    """HAProxy in the foreground with the shipped config; its listen and replica addresses from the environment."""
    binary = haproxy_path()
    if binary is None:
        raise RuntimeError("haproxy not found: install Debian's package (apt-get install -y haproxy)")
    port = free_port()
    env = dict(os.environ, KEBIAO_BIND=f"127.0.0.1:{port}", KEBIAO_BIND_OPTIONS="")
    for n, replica in enumerate(replicas, start=1):
        env[f"KEBIAO_REPLICA_{n}"] = replica.address
    log = (workdir / "haproxy.log").open("wb")
    process = subprocess.Popen([binary, "-db", "-f", str(HAPROXY_CONFIG)], env=env, stdout=log, stderr=log)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, [process], "haproxy")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Load:
    """Open-loop sender of linked-conversation messages; remembers each activity's status and timings."""

    def __init__(self, session: ClientSession, template: dict[str, Any], service_url: str, conversations: int):
        self.session = session
        self.template = template
        self.service_url = service_url
        self.conversations = conversations
        self.run = uuid.uuid4().hex[:8]
        self.status: dict[str, int] = {}
        self.sent: dict[str, float] = {}
        self.http: dict[str, float] = {}
        self.count = 0

    def activity_id(self, i: int) -> str:
        return f"rep-{self.run}-{i:06d}"

    def body(self, i: int) -> dict[str, Any]:
        c = i % self.conversations
        text = f"客户要 sku{i // self.conversations:04d} 的报价"
        return self.in_conversation(c, id=self.activity_id(i), text=text)

    def in_conversation(self, c: int, **fields: Any) -> dict[str, Any]:
        """An activity in personal conversation `c`, from that conversation's own user (Teams has one
        personal chat per user and bot, so one user never writes from fifty of them)."""
        body = copy.deepcopy(self.template)
        body.update(serviceUrl=self.service_url, **fields)
        body["conversation"] = dict(body["conversation"], id=f"a:replica-bench-{c:03d}")
        body["from"] = dict(body["from"], id=f"29:replica-bench-user-{c:03d}", aadObjectId=str(uuid.UUID(int=c + 1)))
        return body

    async def post(self, url: str, body: dict[str, Any]) -> int:
        try:
            async with self.session.post(f"{url}/api/messages", json=body) as response:
                await response.read()
                return response.status
        except (TimeoutError, ClientError):
            return 0

    async def one(self, url: str, i: int) -> None:
        key = self.activity_id(i)
        began = time.perf_counter()
        self.sent[key] = began
        self.status[key] = await self.post(url, self.body(i))
        self.http[key] = (time.perf_counter() - began) * 1000

    async def steady(self, url: str, rate: float, seconds: float, at: dict[float, Any] | None = None) -> list[str]:
        """`rate` messages/s for `seconds`; `at` maps a second of the run to a callable run then. Returns ids."""
        pending = dict(at or {})
        tasks: list[asyncio.Task[None]] = []
        ids: list[str] = []
        t0 = time.perf_counter()
        for k in range(int(rate * seconds)):
            due = t0 + k / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            for second in [s for s in pending if s <= due - t0]:
                pending.pop(second)()
            i, self.count = self.count, self.count + 1
            ids.append(self.activity_id(i))
            tasks.append(asyncio.create_task(self.one(url, i)))
        await asyncio.gather(*tasks)
        return ids


async def link_all(load: Load, url: str) -> None:
    """`link NAME` in each conversation, so its messages tag that customer."""
    for c in range(load.conversations):
        body = load.in_conversation(c, id=f"link-{load.run}-{c}", text=f"link {customer_name(c)}")
        status = await load.post(url, body)
        if status != 200:
            raise RuntimeError(f"linking conversation {c} answered HTTP {status}")


async def tag_events(url: str) -> Counter[str]:
    """Tag events per activity id (the message key in each event's evidence ends with it)."""
    database = await open_database(url, upgrade=False)
    try:
        async with database.engine.connect() as conn:
            rows = (await conn.execute(select(t.tag_events.c.evidence))).all()
    finally:
        await database.close()
    counts: Counter[str] = Counter()
    for (evidence,) in rows:
        data = evidence if isinstance(evidence, dict) else json.loads(evidence or "{}")
        key = str(data.get("message_key") or "")
        if key:
            counts[key.rsplit(":", 1)[-1]] += 1
    return counts


async def outbox_rows(url: str) -> list[tuple[str, str, str, int]]:
    database = await open_database(url, upgrade=False)
    try:
        async with database.engine.connect() as conn:
            o = t.outbox.c
            rows = (await conn.execute(select(o.dedupe_key, o.recipient, o.state, o.attempts))).all()
    finally:
        await database.close()
    return [(r.dedupe_key, r.recipient, r.state, r.attempts) for r in rows]


async def settle_alerts(url: str, fake: TimedConnector, timeout: float = 90.0) -> list[tuple[str, str, str, int]]:
    """Until the outbox has rows, none waiting, and no new send arrived for 3 s (several outbox passes)."""
    deadline = time.monotonic() + timeout
    seen, since = -1, time.monotonic()
    rows: list[tuple[str, str, str, int]] = []
    while time.monotonic() < deadline:
        rows = await outbox_rows(url)
        sends = sum(fake.alerts.values())
        if sends != seen:
            seen, since = sends, time.monotonic()
        waiting = [r for r in rows if r[2] in ("pending", "sending")]
        if rows and not waiting and time.monotonic() - since > 3:
            break
        await asyncio.sleep(0.5)
    return rows


def replica_env(database_url: str, tags: int) -> dict[str, str]:
    """What /etc/kebiao/kebiao.env holds for the bench: emulator mode on loopback, every scheduler on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROSOFT_APP_", "WECOM_", "KEBIAO_"))}
    env.update(
        HOST="127.0.0.1",
        KEBIAO_DATABASE_URL=database_url,
        KEBIAO_SCHEDULER="on",
        KEBIAO_ALERTS_RUN_AT_START="on",
        KEBIAO_OUTBOX_EVERY_SECONDS="1",
        KEBIAO_QUIET_HOURS="off",
        KEBIAO_TAG_HARD_CAP=str(tags + 100),
        KEBIAO_CONSOLE_SECRET=uuid.uuid4().hex,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


async def replica_run(
    postgres: str, workdir: Path, *, rate: float, duration: float, kill_at: float | None,
    conversations: int = 50, baseline: float = 0.0, warmup: float = 0.0, customers: int = 0,
) -> ReplicaOutcome:
    """Start the deployment, hold `rate` messages/s for `duration` s (kill -9 one replica at `kill_at`), count."""
    if haproxy_path() is None:
        raise RuntimeError("haproxy not found: install Debian's package (apt-get install -y haproxy)")
    messages = int(rate * duration) + int(rate * baseline) + int(rate * warmup)
    tags = max(EXPIRING, math.ceil(messages / conversations) + 1)
    template: dict[str, Any] = json.loads(PAYLOAD.read_text(encoding="utf-8"))
    fake = TimedConnector()
    connector = TestServer(fake.app(), host="127.0.0.1")
    await connector.start_server()
    service_url = str(connector.make_url("/"))
    try:
        async with scratch_postgres(postgres, "kebiao_replicas") as url:
            await seed(url, conversations, tags, service_url, template, customers)
            env = replica_env(url, tags)
            replicas = [Replica(f"kebiao{n}", env, workdir) for n in range(1, REPLICAS + 1)]
            try:
                for replica in replicas:
                    replica.start()
                for replica in replicas:
                    await wait_ready(f"http://{replica.address}", [replica], replica.name)
                async with haproxy(replicas, workdir) as lb:
                    outcome = await _drive(fake, url, lb, replicas, template, service_url, conversations,
                                           rate=rate, duration=duration, kill_at=kill_at, baseline=baseline,
                                           warmup=warmup)
            except BaseException:
                print("\n".join(r.tail() for r in replicas), file=sys.stderr)
                raise
            finally:
                for replica in replicas:
                    replica.stop()
        return outcome
    finally:
        await connector.close()


async def _drive(
    fake: TimedConnector, url: str, lb: str, replicas: list[Replica], template: dict[str, Any],
    service_url: str, conversations: int, *, rate: float, duration: float, kill_at: float | None, baseline: float,
    warmup: float,
) -> ReplicaOutcome:
    timeout = ClientTimeout(total=60)
    async with ClientSession(timeout=timeout, connector=TCPConnector(limit=0)) as session:
        load = Load(session, template, service_url, conversations)
        await link_all(load, lb)
        phases = []
        if warmup > 0:  # connections, caches and the first turns of each replica: counted, not timed
            await load.steady(lb, rate, warmup)
        if baseline > 0:
            direct = await load.steady(f"http://{replicas[0].address}", rate, baseline)
            phases.append(_phase(f"direct to one replica, {baseline:g} s", load, fake, direct))
        victim = replicas[1]
        samples: list[tuple[float, float, float]] = []
        at = with_host_samples(duration, samples, {kill_at: victim.kill} if kill_at is not None else {})
        before_cpu, began = cpu_snapshot(replicas), time.monotonic()
        ids = await load.steady(lb, rate, duration, at)
        after_cpu, took = cpu_snapshot(replicas), time.monotonic() - began  # before poll() reaps the killed one
        _sample_host(samples)
        killed = [r.name for r in replicas if r.process is not None and r.process.poll() is not None]
        cpu = cpu_line(before_cpu, after_cpu, took, killed)
        phase = _phase(f"through HAProxy, {duration:g} s", load, fake, ids)
        phase.host = host_windows(samples)
        phases.append(phase)
        before = await tag_events(url)
        acked = [k for k, s in load.status.items() if s == 200]
        lost = tuple(k for k in acked if before[k] == 0)
        not_acked = tuple(k for k, s in load.status.items() if s != 200)
        sem = asyncio.Semaphore(8)

        async def resend(key: str) -> None:
            async with sem:
                load.status[key] = await load.post(lb, load.body(int(key.rsplit("-", 1)[-1])))

        await asyncio.gather(*(resend(k) for k in not_acked))
        statuses = tuple(sorted(Counter(load.status.values()).items()))
    rows = await settle_alerts(url, fake)
    after = await tag_events(url)
    keys = list(load.status)
    per_recipient = Counter(r[1] for r in rows)
    recipients = [MANAGER, *(f"bench-owner-{o}" for o in range(OWNERS))]
    extra = sum(max(0, fake.alerts[f"a:alert-{n}"] - per_recipient[user]) for n, user in enumerate(recipients))
    extra += sum(n - 1 for n in fake.alert_bodies.values() if n > 1)
    return ReplicaOutcome(
        messages=len(keys),
        acked=len(acked),
        not_acked=not_acked,
        lost_acked=lost,
        tagged_once=sum(1 for k in keys if after[k] == 1),
        untagged=tuple(k for k in keys if after[k] == 0),
        tagged_twice=tuple(k for k in keys if after[k] > 1),
        cards_twice=tuple(k for k in keys if fake.cards[k] > 1),
        alerts=len(rows),
        alerts_unsent=tuple(r[0] for r in rows if (r[2], r[3]) != ("sent", 1)),
        alert_sends=sum(fake.alerts.values()),
        alert_extra_sends=extra,
        killed=kill_at is not None and replicas[1].process is not None and replicas[1].process.poll() is not None,
        phases=tuple(phases),
        statuses=statuses,
        cpu=cpu,
    )


def _sample_host(samples: list[tuple[float, float, float]]) -> None:
    samples.append((time.monotonic(), *host_cpu()))


def with_host_samples(
    duration: float, samples: list[tuple[float, float, float]], at: dict[float, Any]
) -> dict[float, Any]:
    """`at` (a second of the run → what to do then), with a sample of the host's CPU at every window's start."""
    events = dict(at)
    for second in (k * WINDOW for k in range(math.ceil(duration / WINDOW))):
        then = events.get(second)
        events[second] = functools.partial(_sample_then, samples, then)
    return events


def _sample_then(samples: list[tuple[float, float, float]], then: Any) -> None:
    _sample_host(samples)
    if then is not None:
        then()


def host_windows(samples: Sequence[tuple[float, float, float]]) -> list[tuple[float, float]]:
    """(busy cores, stolen cores) between consecutive samples of (monotonic time, busy CPU s, stolen CPU s)."""
    out = []
    for (t0, busy0, stolen0), (t1, busy1, stolen1) in itertools.pairwise(samples):
        if t1 > t0:
            out.append(((busy1 - busy0) / (t1 - t0), (stolen1 - stolen0) / (t1 - t0)))
    return out


def _phase(name: str, load: Load, fake: TimedConnector, ids: list[str]) -> Phase:
    phase = Phase(name)
    phase.http = [load.http[k] for k in ids if k in load.http]
    first = min((load.sent[k] for k in ids), default=0.0)
    phase.timed = [(load.sent[k] - first, load.http[k]) for k in ids if k in load.http]
    phase.e2e = [(fake.arrived[k] - load.sent[k]) * 1000 for k in ids if k in fake.arrived]
    return phase


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(options: argparse.Namespace) -> int:
    postgres = options.postgres or os.environ.get("KEBIAO_TEST_POSTGRES_URL") or POSTGRES_DEFAULT
    kill_at = None if options.kill_at is not None and options.kill_at < 0 else (
        options.kill_at if options.kill_at is not None else options.duration / 2
    )
    print(
        f"{REPLICAS} replicas behind HAProxy ({HAPROXY_CONFIG.relative_to(ROOT)}), PostgreSQL; "
        f"{options.rate:g} messages/s for {options.duration:g} s over {options.conversations} linked conversations"
        + (f"; kill -9 of one replica at {kill_at:g} s" if kill_at is not None else "; no kill")
        + (f"; {options.customers} customers already in the database, analyzed" if options.customers else
           "; an empty database"),
        flush=True,
    )
    print(f"before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        outcome = await replica_run(
            postgres, Path(folder), rate=options.rate, duration=options.duration, kill_at=kill_at,
            conversations=options.conversations, baseline=options.baseline, warmup=options.warmup,
            customers=options.customers,
        )
    print(f"after:  {load_average()}")
    for phase in outcome.phases:
        print("\n".join(phase.lines()))
    if kill_at is not None and outcome.phases:
        print(outcome.phases[-1].near(kill_at))
    if outcome.cpu:
        print(outcome.cpu)
    if len(outcome.phases) == 2 and outcome.phases[0].e2e and outcome.phases[1].e2e:
        ratio = percentile(outcome.phases[1].e2e, 0.99) / percentile(outcome.phases[0].e2e, 0.99)
        print(f"  p99 e2e through HAProxy / direct: {ratio:.2f}x")
    print(
        f"messages {outcome.messages}: acknowledged with 200 during the run {outcome.acked}, "
        f"not {len(outcome.not_acked)}; acknowledged but not stored {len(outcome.lost_acked)}"
    )
    print(
        f"after resending the unacknowledged: tagged exactly once {outcome.tagged_once}, never "
        f"{len(outcome.untagged)}, twice {len(outcome.tagged_twice)}; cards twice {len(outcome.cards_twice)}; "
        f"final statuses {dict(outcome.statuses)}"
    )
    print(
        f"alerts with {REPLICAS} schedulers on: outbox rows {outcome.alerts}, not sent-once "
        f"{len(outcome.alerts_unsent)}, sends at the connector {outcome.alert_sends}, extra sends "
        f"{outcome.alert_extra_sends}"
    )
    return 0


def main(argv: Sequence[str]) -> int:
    """Entry point for `python -m bench replicas`."""
    parser = argparse.ArgumentParser(prog="python -m bench replicas", description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second (default 100)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load through HAProxy (default 60)")
    parser.add_argument(
        "--kill-at", type=float, help="second of the timed run to SIGKILL one replica (default: half way; <0: none)"
    )
    parser.add_argument("--conversations", type=int, default=50, help="linked conversations (default 50)")
    parser.add_argument(
        "--baseline", type=float, default=5.0, help="seconds sent straight to one replica first (default 5; 0: none)"
    )
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds through HAProxy before timing starts (default 5)"
    )
    parser.add_argument(
        "--customers", type=int, default=20_000,
        help=f"customers already in the database, {BACKGROUND_TAGS} tags each, analyzed (default 20000; 0: empty)",
    )
    parser.add_argument("--postgres", help=f"PostgreSQL server URL for a scratch database (default {POSTGRES_DEFAULT})")
    options = parser.parse_args(list(argv))
    return asyncio.run(run(options))
