"""The durable WeCom inbox: stored before the 200, retried after failures, picked up after a crash, once only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import bots.wecom.handlers as handlers_module
from app import DATABASE, WECOM, WECOM_SHUTDOWN_GRACE, create_app
from bots.wecom.inbox import LEASE_SECONDS, MAX_ATTEMPTS, retry_delay
from bots.wecom.outcomes import DoneBatcher
from bots.wecom.parser import parse_message
from core.chat.ports import InboundMessage
from storage import tables as t
from storage.channels import SqlChannelStore, stored_key
from storage.database import Database
from tests.wecom.callbacks import contact_xml, settings_for
from tests.wecom.fake_api import FakeWeComApi
from tests.wecom.test_routes import count, post, settle

EXTERNAL = "wmZHAOLEI0001"
ADD = contact_xml("add_external_contact", external=EXTERNAL, state="expo2025", created=1732600000)
NOW = datetime(2025, 3, 1, 9, tzinfo=UTC)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi) -> AsyncIterator[TestClient]:
    fake_wecom.add_contact(EXTERNAL, "赵磊", ["zhangwei"])
    yield await aiohttp_client(create_app(settings_for(tmp_path, fake_wecom.api_base)))


def _failing(times: int) -> Callable[..., Awaitable[Any]]:
    """record_contact_event that hits a database error `times` times, then works (a transient outage)."""
    real = handlers_module.record_contact_event
    left = [times]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            raise OperationalError("UPDATE customers", {}, Exception("database is locked"))
        return await real(*args, **kwargs)

    return flaky


async def _row(client: TestClient) -> InboundMessage:
    key = parse_message(ADD).dedupe_key
    row = await SqlChannelStore(client.app[DATABASE].engine).inbound_message("wecom", key)
    assert row is not None
    return row


async def _effects(client: TestClient) -> tuple[int, int, int]:
    """(customers, channel-tag assignments, tag events): what the add event does."""
    return (
        await count(client, t.customers),
        await count(client, t.tag_assignments),
        await count(client, t.tag_events),
    )


async def test_a_failing_handler_is_retried_after_the_failure_clears_with_one_effect(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers_module, "record_contact_event", _failing(1))
    assert await post(client, ADD) == (200, "")
    await settle(client)
    row = await _row(client)
    assert (row.state, row.attempts) == ("pending", 1) and "database is locked" in (row.last_error or "")
    assert await _effects(client) == (0, 0, 0)
    assert row.next_attempt_at > datetime.now(UTC)  # backing off, not spinning
    inbox = client.app[WECOM].inbox
    assert await inbox.drain() == 0  # not due yet
    assert await inbox.drain(now=datetime.now(UTC) + timedelta(hours=1)) == 1
    await settle(client)
    assert (await _row(client)).state == "done"
    assert await _effects(client) == (1, 1, 1)
    for _ in range(3):  # WeCom retries of the same callback afterwards change nothing
        assert await post(client, ADD) == (200, "")
    await settle(client)
    assert await inbox.drain(now=datetime.now(UTC) + timedelta(days=1)) == 0
    assert await _effects(client) == (1, 1, 1)
    assert await count(client, t.inbound_messages) == 1


async def test_the_same_callback_posted_four_times_is_stored_and_run_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = [0]
    real = handlers_module.record_contact_event

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(handlers_module, "record_contact_event", counted)
    statuses = await asyncio.gather(*(post(client, ADD) for _ in range(4)))  # concurrent: one batched insert
    assert statuses == [(200, "")] * 4
    await settle(client)
    assert calls[0] == 1 and await _effects(client) == (1, 1, 1)
    assert (await _row(client)).state == "done" and await count(client, t.inbound_messages) == 1


async def test_a_poison_callback_is_marked_failed_after_the_attempt_limit(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(handlers_module, "record_contact_event", _failing(10_000))
    await post(client, ADD)
    await settle(client)
    inbox = client.app[WECOM].inbox
    later = datetime.now(UTC)
    for _ in range(MAX_ATTEMPTS + 2):
        later += timedelta(days=1)
        await inbox.drain(now=later)
        await settle(client)
    row = await _row(client)
    assert (row.state, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert "OperationalError" in (row.last_error or "")
    assert any(r.levelno == logging.ERROR and "given up" in r.getMessage() for r in caplog.records)
    assert await _effects(client) == (0, 0, 0)


async def test_a_callback_interrupted_by_shutdown_runs_in_the_next_app(
    aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_wecom.add_contact(EXTERNAL, "赵磊", ["zhangwei"])
    entered = asyncio.Event()

    async def hangs(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await asyncio.Event().wait()  # a handler still running when the app stops

    monkeypatch.setattr(handlers_module, "record_contact_event", hangs)
    first_app = create_app(settings_for(tmp_path, fake_wecom.api_base))
    first_app[WECOM_SHUTDOWN_GRACE] = 0.05
    first = await aiohttp_client(first_app)
    assert await post(first, ADD) == (200, "")
    await asyncio.wait_for(entered.wait(), timeout=10)
    await first.close()  # cancels the handler; the row is made due for the next start
    monkeypatch.undo()

    second = await aiohttp_client(create_app(settings_for(tmp_path, fake_wecom.api_base)))
    await _until_done(second)  # the start-up inbox pass found it
    assert await _effects(second) == (1, 1, 1)
    assert (await _row(second)).attempts == 2


async def test_a_row_left_by_a_crashed_process_runs_once_its_lease_expires(client: TestClient) -> None:
    store = SqlChannelStore(client.app[DATABASE].engine)
    key = parse_message(ADD).dedupe_key
    now = datetime.now(UTC)
    # What a process that died right after its acknowledgement leaves behind: a leased pending row.
    await store.accept_inbound_many("wecom", [(key, ADD)], now, now + timedelta(seconds=LEASE_SECONDS))
    inbox = client.app[WECOM].inbox
    assert await inbox.drain() == 0  # still leased: the crashed process might have been mid-way
    assert await inbox.drain(now=now + timedelta(seconds=LEASE_SECONDS + 1)) == 1
    await settle(client)
    assert (await _row(client)).state == "done" and await _effects(client) == (1, 1, 1)


async def _until_done(client: TestClient) -> None:
    for _ in range(500):
        await settle(client)
        async with client.app[DATABASE].engine.connect() as conn:
            states = (await conn.execute(select(t.inbound_messages.c.state))).scalars().all()
        if states == ["done"]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the stored callback was never processed")


def test_retry_delay_grows_and_is_capped() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert retry_delay(30) == 900.0


# ---------------------------------------------------------------- the store, on SQLite and PostgreSQL


async def test_inbox_store_dedupes_claims_once_and_records_outcomes(database: Database) -> None:
    store = SqlChannelStore(database.engine)
    lease = NOW + timedelta(minutes=2)
    first = await store.accept_inbound_many("wecom", [("k1", "<xml>一</xml>"), ("k2", "<xml>二</xml>")], NOW, lease)
    again = await store.accept_inbound_many("wecom", [("k1", "<xml>一</xml>"), ("k3", "<xml>三</xml>")], NOW, lease)
    assert set(first) == {"k1", "k2"} and set(again) == {"k3"}
    assert await store.claim_inbound_due("wecom", NOW, lease, 10) == []  # all leased
    later = lease + timedelta(seconds=1)
    claimed = await store.claim_inbound_due("wecom", later, later + timedelta(minutes=2), 10)
    assert [(m.dedupe_key, m.attempts, m.body) for m in claimed] == [
        ("k1", 2, "<xml>一</xml>"),
        ("k2", 2, "<xml>二</xml>"),
        ("k3", 2, "<xml>三</xml>"),
    ]
    await store.finish_inbound(first["k1"], later)
    await store.retry_inbound(first["k2"], later, later, "接口暂时不可用")
    await store.fail_inbound(again["k3"], later, "格式错误")
    states = {k: await store.inbound_message("wecom", k) for k in ("k1", "k2", "k3")}
    assert {k: (m.state, m.last_error) for k, m in states.items() if m} == {
        "k1": ("done", None),
        "k2": ("pending", "接口暂时不可用"),
        "k3": ("failed", "格式错误"),
    }
    assert await store.purge_inbound(later + timedelta(days=1)) == 1  # only the done row goes
    assert await store.inbound_message("wecom", "k1") is None


async def test_concurrent_drains_never_claim_the_same_row(database: Database) -> None:
    store = SqlChannelStore(database.engine)
    items = [(f"key-{i}", f"<xml>{i}</xml>") for i in range(40)]
    await store.accept_inbound_many("wecom", items, NOW, NOW)
    results = await asyncio.gather(
        *(store.claim_inbound_due("wecom", NOW, NOW + timedelta(minutes=2), 15) for _ in range(4))
    )
    ids = [m.id for batch in results for m in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_long_keys_sharing_a_prefix_never_collide(database: Database) -> None:
    store = SqlChannelStore(database.engine)
    prefix = "change_external_contact|add_external_contact|" + "客" * 600
    one, two = prefix + "|甲", prefix + "|乙"
    assert stored_key(one) != stored_key(two) and len(stored_key(one)) <= 500
    assert stored_key("7000001") == "7000001"  # short keys stay readable
    assert set(await store.accept_inbound_many("wecom", [(one, "<xml/>"), (two, "<xml/>")], NOW, NOW)) == {one, two}
    assert await store.claim_inbound_many("teams", [one, two], NOW) == {one, two}
    assert await store.claim_inbound("teams", one, NOW) is False
    await store.release_inbound("teams", one)
    assert await store.claim_inbound("teams", one, NOW) is True
    async with database.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.inbound_dedup))).scalar_one() == 2


async def test_done_marks_finishing_together_share_one_update_and_each_waits_for_it(database: Database) -> None:
    store = SqlChannelStore(database.engine)
    items = [(f"done-{i}", f"<xml>第{i}条</xml>") for i in range(5)]
    ids = await store.accept_inbound_many("wecom", items, NOW, NOW + timedelta(minutes=2))
    calls: list[list[int]] = []
    real = store.finish_inbound_many

    async def counted(message_ids: Any, now: datetime) -> None:
        calls.append(sorted(message_ids))
        await real(message_ids, now)

    store.finish_inbound_many = counted  # type: ignore[method-assign]
    batcher = DoneBatcher(store, delay=0.05)
    await asyncio.gather(*(batcher.finish(ids[key], NOW) for key, _ in items[:4]))
    assert calls == [sorted(ids[key] for key, _ in items[:4])]  # one statement for the four
    states = [(await store.inbound_message("wecom", key)) for key, _ in items]
    assert [m.state for m in states if m] == ["done"] * 4 + ["pending"]


async def test_a_done_mark_that_cannot_be_written_fails_every_waiter_and_leaves_the_rows_pending(
    database: Database,
) -> None:
    store = SqlChannelStore(database.engine)
    ids = await store.accept_inbound_many("wecom", [("坏-1", "<xml/>"), ("坏-2", "<xml/>")], NOW, NOW)

    async def outage(message_ids: Any, now: datetime) -> None:
        raise OperationalError("UPDATE inbound_messages", {}, Exception("database is locked"))

    store.finish_inbound_many = outage  # type: ignore[method-assign]
    batcher = DoneBatcher(store, delay=0.01)
    results = await asyncio.gather(*(batcher.finish(i, NOW) for i in ids.values()), return_exceptions=True)
    assert [type(r) for r in results] == [OperationalError, OperationalError]
    await batcher.settled()
    assert {m.state for k in ids if (m := await store.inbound_message("wecom", k))} == {"pending"}


async def test_done_marks_wait_for_the_acknowledgement_insert_being_written(database: Database) -> None:
    store = SqlChannelStore(database.engine)
    ids = await store.accept_inbound_many("wecom", [("让路-1", "<xml>先确认</xml>")], NOW, NOW)
    ack_written = asyncio.Event()
    batcher = DoneBatcher(store, delay=0.001, yield_to=ack_written.wait)
    marking = asyncio.create_task(batcher.finish(ids["让路-1"], NOW))
    await asyncio.sleep(0.05)
    assert not marking.done() and (await store.inbound_message("wecom", "让路-1")).state == "pending"  # type: ignore[union-attr]
    ack_written.set()
    await marking
    assert (await store.inbound_message("wecom", "让路-1")).state == "done"  # type: ignore[union-attr]
