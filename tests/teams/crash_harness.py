"""Kill -9 a real `kebiao serve` in the middle of a burst to a linked chat, restart it, resend everything.

Used by tests/teams/test_crash.py (a small burst, asserted) and `python -m bench crash` (200 messages, printed).
Every message names its own product keyword, so each one auto-applies its own tag to the linked customer:
exactly one tag event per message when nothing is lost or done twice, and one applied card per message at the
fake Bot Connector. The server runs as a subprocess (`python -m cli serve`, emulator mode on 127.0.0.1); its
code can be pointed elsewhere (`code`, prepended to PYTHONPATH) to measure an older version the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from storage import tables as t
from tests.teams.fake_connector import FakeConnector

PAYLOAD = Path(__file__).resolve().parent.parent / "payloads" / "teams" / "personal_message.json"
CUSTOMER = "崩溃测试客户"
READY_SECONDS = 120.0


@dataclass(frozen=True)
class CrashOutcome:
    """What a burst, a kill -9, a restart and a full resend left behind."""

    messages: int
    cards_before_kill: int  # cards the connector had received when the server was killed
    tagged: int  # messages with exactly one tag event
    untagged: tuple[str, ...]  # activity ids with no tag event (lost)
    tagged_twice: tuple[str, ...]  # activity ids with more than one tag event
    delivered: int  # messages with at least one card
    missing_cards: tuple[str, ...]  # activity ids without a card (lost)
    duplicated_cards: tuple[str, ...]  # activity ids with more than one card
    resend_statuses: tuple[tuple[int, int], ...]  # (HTTP status, how many) of the resend

    def summary(self) -> str:
        return (
            f"{self.messages} messages, killed after {self.cards_before_kill} cards: "
            f"lost {len(self.untagged)} tags and {len(self.missing_cards)} cards, "
            f"tagged twice {len(self.tagged_twice)}, cards twice {len(self.duplicated_cards)}, "
            f"delivered {self.delivered}/{self.messages}, resend statuses {dict(self.resend_statuses)}"
        )


def taxonomy_yaml(messages: int) -> str:
    """One auto-apply tag per message, each with its own keyword (sku0000, sku0001, …)."""
    lines = ["version: 1", "dimensions:", "  - key: product", "    name: 产品", "    tags:"]
    for i in range(messages):
        lines += [f"      - name: 产品{i:04d}", f"        keywords: [sku{i:04d}]", "        auto_apply: true"]
    return "\n".join(lines) + "\n"


def activity_id(i: int) -> str:
    return f"crash-{i:04d}"


def message(template: dict[str, Any], service_url: str, i: int) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body.update(id=activity_id(i), text=f"客户要 sku{i:04d} 的报价", serviceUrl=service_url)
    return body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class KillingConnector(FakeConnector):
    """The fake Bot Connector, killing the server process when the `kill_after`-th card arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.victim: subprocess.Popen[bytes] | None = None
        self.kill_after = 0
        self.cards_at_kill = -1

    def cards(self) -> int:
        return sum(1 for call in self.delivered if call.body.get("attachments"))

    async def _send(self, request: web.Request) -> web.Response:
        response = await super()._send(request)
        victim = self.victim
        if victim is not None and self.cards() >= self.kill_after and victim.poll() is None:
            victim.send_signal(signal.SIGKILL)  # mid-turn: the reply is recorded, the turn never finishes
            self.cards_at_kill = self.cards()
            self.victim = None
        return response


class Server:
    """`python -m cli serve` on a free loopback port with its own log file."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._starts = 0

    async def start(self) -> subprocess.Popen[bytes]:
        port = free_port()
        self._starts += 1
        log = (self.workdir / f"serve-{self._starts}.log").open("wb")
        env = dict(self.env, PORT=str(port))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve"], env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.url = f"http://127.0.0.1:{port}"
        await self._ready()
        return self.process

    async def _ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        async with ClientSession(timeout=ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"kebiao serve exited early:\n{self.log_tail()}")
                with contextlib.suppress(ClientError, asyncio.TimeoutError):
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"kebiao serve was not ready in {READY_SECONDS:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(self, lines: int = 40) -> str:
        logs = sorted(self.workdir.glob("serve-*.log"))
        if not logs:
            return ""
        return "\n".join(logs[-1].read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


async def _post(session: ClientSession, url: str, body: dict[str, Any]) -> int:
    """POST one activity; a dropped connection (the server was killed) is status 0."""
    try:
        async with session.post(f"{url}/api/messages", json=body) as response:
            await response.read()
            return response.status
    except (TimeoutError, ClientError):
        return 0


async def _burst(session: ClientSession, url: str, bodies: list[dict[str, Any]], concurrency: int) -> list[int]:
    """Send every body with `concurrency` in flight; after the first dropped connection, send no more."""
    statuses: list[int] = []
    queue = iter(bodies)
    dead = asyncio.Event()

    async def worker() -> None:
        for body in queue:
            if dead.is_set():
                return
            status = await _post(session, url, body)
            statuses.append(status)
            if status == 0:
                dead.set()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


@contextlib.asynccontextmanager
async def connector_server(fake: FakeConnector) -> AsyncIterator[str]:
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()


async def _import_customer(env: dict[str, str], workdir: Path) -> None:
    """Create (and migrate) the database and add the customer through the CLI of the code under test."""
    csv = workdir / "customers.csv"
    csv.write_text(f"name,company\n{CUSTOMER},崩溃测试\n", encoding="utf-8")
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli", "customers", "import", str(csv)],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=READY_SECONDS,
    )
    if done.returncode != 0:
        raise RuntimeError(f"customers import failed: {done.stdout}{done.stderr}")


async def _tag_events(database_url: str) -> Counter[str]:
    """Tag events per activity id (from the message key in each event's evidence)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(t.tag_events.c.evidence))).all()
    finally:
        await engine.dispose()
    counts: Counter[str] = Counter()
    for (evidence,) in rows:
        data = evidence if isinstance(evidence, dict) else json.loads(evidence or "{}")
        key = str(data.get("message_key") or "")
        if key:
            counts[key.rsplit(":", 1)[-1]] += 1
    return counts


async def crash_run(
    database_url: str,
    workdir: Path,
    *,
    messages: int,
    concurrency: int,
    kill_after: int,
    code: Path | None = None,
) -> CrashOutcome:
    """Burst `messages` to a linked chat, kill -9 after `kill_after` cards, restart, resend all; count."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROSOFT_APP_", "WECOM_", "KEBIAO_"))}
    taxonomy = workdir / "taxonomy.yaml"
    taxonomy.write_text(taxonomy_yaml(messages), encoding="utf-8")
    env.update(
        HOST="127.0.0.1",
        KEBIAO_SCHEDULER="off",
        KEBIAO_DATABASE_URL=database_url,
        KEBIAO_TAXONOMY=str(taxonomy),
        KEBIAO_TAG_HARD_CAP=str(messages + 100),
    )
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    await _import_customer(env, workdir)
    template: dict[str, Any] = json.loads(PAYLOAD.read_text(encoding="utf-8"))
    fake = KillingConnector()
    server = Server(env, workdir)
    async with connector_server(fake) as service_url:
        bodies = [message(template, service_url, i) for i in range(messages)]
        timeout = ClientTimeout(total=60)
        try:
            await server.start()
            async with ClientSession(timeout=timeout) as session:
                link = dict(copy.deepcopy(template), id="crash-link", text=f"link {CUSTOMER}", serviceUrl=service_url)
                if await _post(session, server.url, link) != 200:
                    raise RuntimeError(f"linking the chat failed:\n{server.log_tail()}")
                linked_cards = fake.cards()
                fake.kill_after = linked_cards + kill_after
                fake.victim = server.process
                await _burst(session, server.url, bodies, concurrency)
            if fake.victim is not None:  # the burst ended before the kill_after-th card: kill it now
                fake.victim.send_signal(signal.SIGKILL)
                fake.cards_at_kill, fake.victim = fake.cards(), None
            cards_before_kill = fake.cards_at_kill - linked_cards
            if server.process is not None:
                await asyncio.to_thread(server.process.wait, 30)
            await server.start()
            async with ClientSession(timeout=timeout) as session:
                sem = asyncio.Semaphore(concurrency)

                async def resend(body: dict[str, Any]) -> int:
                    async with sem:
                        return await _post(session, server.url, body)

                statuses = await asyncio.gather(*(resend(body) for body in bodies))
        finally:
            fake.victim = None
            server.stop()
    events = await _tag_events(database_url)
    cards = Counter(c.reply_to_id for c in fake.delivered if c.body.get("attachments"))
    ids = [activity_id(i) for i in range(messages)]
    return CrashOutcome(
        messages=messages,
        cards_before_kill=cards_before_kill,
        tagged=sum(1 for a in ids if events[a] == 1),
        untagged=tuple(a for a in ids if events[a] == 0),
        tagged_twice=tuple(a for a in ids if events[a] > 1),
        delivered=sum(1 for a in ids if cards[a] > 0),
        missing_cards=tuple(a for a in ids if cards[a] == 0),
        duplicated_cards=tuple(a for a in ids if cards[a] > 1),
        resend_statuses=tuple(sorted(Counter(statuses).items())),
    )
