"""A linked message's turn writes once: its suggestions, learning text and customer event share one transaction.

Counted with storage.statements through the real app (real adapter, real database, fake connector) on SQLite
and PostgreSQL; every count is per turn over several sequential turns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from app import DATABASE, TEAMS, create_app
from config import Settings
from core.chat.turns import TurnLeases
from core.records import CustomerDraft
from storage import tables as t
from storage.database import Database
from storage.statements import count_statements
from tests.teams.conftest import load_payload
from tests.teams.fake_connector import FakeConnector

TURNS = 6
# Write transactions of one sequential turn: the lease claim, the turn's own writes, the lease finish.
WRITES_PER_TURN = 3
# Read-only transactions of one: none (the chat's link is cached; a new activity is claimed without a look).
READS_PER_TURN = 0


Send = Callable[[str, str], Awaitable[None]]


async def _linked_chat(
    aiohttp_client: Any, database_url: str, url: str, prefix: str
) -> tuple[TestClient, Database, TurnLeases, Send, int]:
    """The real app with a customer linked to the personal chat and one warm-up turn: (client, database,
    leases, send, customer id); `send(activity_id, text)` posts a message and expects HTTP 200."""
    client: TestClient = await aiohttp_client(create_app(Settings(database_url=database_url, scheduler_enabled=False)))
    database = client.app[DATABASE]
    name = f"{prefix}-{time.time_ns()}"
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name=name), datetime.now(UTC))
    run = time.time_ns()

    async def send(activity_id: str, text: str) -> None:
        body = load_payload("personal_message", url)
        body.update(text=text, id=f"{activity_id}-{run}")
        response = await client.post("/api/messages", json=body)
        assert response.status == 200, await response.text()

    leases = client.app[TEAMS].claims
    assert isinstance(leases, TurnLeases)
    await send("link", f"link {name}")
    await send("warm", "麻烦发一下报价单")
    await leases.flush()
    return client, database, leases, send, customer.id


async def test_a_linked_message_takes_one_write_transaction_for_its_own_writes(
    aiohttp_client: Any, database_url: str, connector: tuple[FakeConnector, str]
) -> None:
    fake, url = connector
    _client, database, leases, send, customer_id = await _linked_chat(aiohttp_client, database_url, url, "计数客户")
    with count_statements(database.engine) as count:
        for i in range(TURNS):
            await send(f"turn-{i}", f"请问价格怎么算，第{i}号订单")
        await leases.flush()  # the finished turns, written as they would be moments later
    statements, writes, reads = count.per(TURNS)
    assert writes <= WRITES_PER_TURN, f"{writes:.1f} write transactions per turn (at most {WRITES_PER_TURN})"
    assert reads <= READS_PER_TURN, f"{reads:.1f} read-only transactions per turn (at most {READS_PER_TURN})"
    # PostgreSQL: the claim, the message's one write (suggestions, text and event in one statement, in no
    # transaction), the finish. SQLite: the claim and the finish, a BEGIN each, and the message's one trip:
    # BEGIN IMMEDIATE, three inserts and the look for suggestions stored before. The customer was read by the
    # warm-up turn and is reused for a few seconds, as the conversation's link is.
    most = 3 if database.engine.dialect.name == "postgresql" else 9
    assert statements <= most, f"{statements:.1f} statements per turn (at most {most})"

    async with database.engine.connect() as conn:
        suggested = await conn.scalar(
            select(func.count(func.distinct(t.suggestions.c.message_key))).where(
                t.suggestions.c.customer_id == customer_id
            )
        )
        m = t.learning_messages.c
        kept = await conn.scalar(select(func.count(m.id)).where(m.customer_id == customer_id))
        events = await conn.scalar(
            select(func.count())
            .select_from(t.customer_events)
            .where(t.customer_events.c.customer_id == customer_id, t.customer_events.c.kind == "message")
        )
    assert suggested == TURNS + 1  # every turn (and the warm-up) stored its suggestion …
    assert kept == TURNS + 1  # … kept its text for learning …
    assert events == TURNS + 1  # … and recorded its message event, in the same transaction
    assert len([c for c in fake.delivered if c.body.get("attachments")]) >= TURNS + 1


# Messages that each apply a new tag of the built-in taxonomy (auto_apply), none of which a message rule watches.
APPLYING = ("我们在展会上见过", "我们想申请试用", "合同已签约")


async def test_a_linked_message_applying_a_tag_is_one_read_and_one_write_on_postgres(
    aiohttp_client: Any, database_url: str, connector: tuple[FakeConnector, str]
) -> None:
    _fake, url = connector
    _client, database, leases, send, customer_id = await _linked_chat(aiohttp_client, database_url, url, "应用客户")
    with count_statements(database.engine) as count:
        for i, text in enumerate(APPLYING):
            await send(f"apply-{i}", text)
        await leases.flush()
    statements, writes, reads = count.per(len(APPLYING))
    # PostgreSQL: the claim, the policy's read of the customer's tags, the one write (the assignment and its
    # event with the suggestion, text and message event), the finish; no transaction. SQLite applies in a write
    # transaction of its own, its statements one at a time, beside the claim's and the finish's.
    postgres = database.engine.dialect.name == "postgresql"
    assert writes <= WRITES_PER_TURN and reads <= READS_PER_TURN, (writes, reads)
    most = 4 if postgres else 12
    assert statements <= most, f"{statements:.1f} statements per turn (at most {most})"
    async with database.unit_of_work(read_only=True) as uow:
        held = {a.tag for a in await uow.assignments.active_for(customer_id)}
        added = [e for e in await uow.events.for_customer(customer_id, 0, 10) if e.kind.value == "added"]
    assert held == {"渠道-展会", "试用中", "已成交"} and len(added) == 3


IN_FLIGHT = 8  # requests at once: as many as a process runs turns
ROUNDS = 4  # turns each of them sends, one after another


async def test_turns_in_flight_share_their_lease_writes_and_look_at_no_lease(
    aiohttp_client: Any, database_url: str, connector: tuple[FakeConnector, str]
) -> None:
    _fake, url = connector
    _client, database, leases, send, _customer = await _linked_chat(aiohttp_client, database_url, url, "并发客户")

    async def sender(first: int) -> None:
        for i in range(first, first + ROUNDS):
            await send(f"turn-{i}", f"请问价格怎么算，第{i}号订单")
    with count_statements(database.engine) as count:
        await asyncio.gather(*(sender(k * ROUNDS) for k in range(IN_FLIGHT)))
        await leases.flush()
    _statements, writes, reads = count.per(IN_FLIGHT * ROUNDS)
    # Each turn's own write, plus claims and finishes sharing batches (sequential turns: 2 lease writes each).
    assert writes <= 2, f"{writes:.2f} write transactions per turn"
    # A claim looks at its lease only when every slot is busy and no finished turn frees one (rare here).
    assert reads <= 0.5, f"{reads:.2f} read-only transactions per turn"
