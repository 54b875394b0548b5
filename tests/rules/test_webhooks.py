"""Webhook calls through the outbox to a receiver on 127.0.0.1 that checks signatures as docs/rules.md says."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bots.webhook.delivery import WebhookDeliverer
from core.alerts.outbox import OutboxPolicy, drain
from core.alerts.ports import Delivery, DeliveryOutcome, OutboxMessage
from core.rules.service import run_for_message
from core.rules.webhooks import failed_webhooks, resend_webhook
from storage.database import Database
from storage.outbox import SqlAlertStore
from storage.rules import SqlRulesStore
from tagging.builtin import load_builtin
from tagging.loader import dump_taxonomy, load_taxonomy_text
from tests.rules.conftest import NOW, Cell, context, seed, use_taxonomy

SECRET = "whsec-测试-0123456789"


@dataclass
class Receiver:
    """Verifies Kebiao-Signature = "v1=" + hex(HMAC-SHA256(secret, "<Kebiao-Timestamp>." + raw body))."""

    base: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    bad_signatures: int = 0

    async def ok(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers["Kebiao-Timestamp"]
        expected = "v1=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("Kebiao-Signature", "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        key = request.headers["Kebiao-Idempotency-Key"]
        if key not in self.keys:  # a receiver drops repeats by the idempotency key
            self.keys.append(key)
            self.received.append(json.loads(body))
        return web.Response(status=204)

    async def fail(self, request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def gone(self, request: web.Request) -> web.Response:
        return web.Response(status=410)

    async def hang(self, request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(status=200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/ok", state.ok)
    app.router.add_post("/fail", state.fail)
    app.router.add_post("/gone", state.gone)
    app.router.add_post("/hang", state.hang)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.base = f"http://127.0.0.1:{server.port}"
    try:
        yield state
    finally:
        await server.close()


def hooked_taxonomy(base: str) -> Any:
    text = dump_taxonomy(load_builtin()).split("\nwebhooks:")[0]
    hooks = "\n".join(
        f"  - name: {name}\n    url: {base}/{name}\n    secret_env: KEBIAO_WEBHOOK_SECRET"
        for name in ("hang", "ok", "fail", "gone")
    )
    calls = "\n".join(f"      - webhook: {name}" for name in ("hang", "ok", "fail", "gone"))
    return load_taxonomy_text(
        text + f"\nwebhooks:\n{hooks}\nrules:\n  - name: 退款工单\n    trigger: message\n"
        f"    when: {{message_tag: 售后工单}}\n    then:\n      - add: 售后工单\n{calls}\n"
    )


async def test_signed_calls_retries_permanent_failures_and_a_hanging_receiver(
    database: Database, cell: Cell, receiver: Receiver
) -> None:
    ids = await seed(database)
    await use_taxonomy(database, cell, hooked_taxonomy(receiver.base))
    ctx = context(database, cell)
    await run_for_message(ctx, ids["yi"], "msg-refund", ["售后工单"], NOW)
    store = SqlAlertStore(database.engine)
    policy = OutboxPolicy(max_attempts=2, base_delay=timedelta(minutes=1))
    async with aiohttp.ClientSession() as session:
        deliverer = WebhookDeliverer(session, cell, {"KEBIAO_WEBHOOK_SECRET": SECRET}, timeout=0.5, clock=lambda: NOW)
        first = await drain(store, {"webhook": deliverer}, policy, NOW)
        # hang (timeout) and fail (500) retry later; gone (410) fails for good; ok is delivered despite the hang.
        assert (first.sent, first.retried, first.failed) == (1, 2, 1)
        assert receiver.bad_signatures == 0 and len(receiver.received) == 1
        body = receiver.received[0]
        assert body["rule"] == "退款工单" and body["customer"]["name"] == "乙公司" and body["webhook"] == "ok"
        assert body["tags_added"] == ["售后工单"] and body["facts"] == ["本条消息匹配 售后工单"]
        later = await drain(store, {"webhook": deliverer}, policy, NOW + timedelta(minutes=5))
        assert (later.sent, later.failed) == (0, 2)  # the second failure is the last attempt
        rules_store = SqlRulesStore(database.engine)
        failed = await failed_webhooks(rules_store)
        assert sorted(m.recipient for m in failed) == ["fail", "gone", "hang"]
        gone = next(m for m in failed if m.recipient == "gone")
        assert gone.last_error == "receiver answered HTTP 410"
        assert str(next(m for m in failed if m.recipient == "hang").last_error).startswith(
            "gave up after 2 attempts: no answer"
        )
        # Resend the 410 after the receiver is fixed: the same idempotency key goes out again.
        await resend_webhook(rules_store, gone.id, NOW, "test")
        with pytest.raises(ValueError, match="only a failed call can be resent"):
            await resend_webhook(rules_store, gone.id, NOW, "test")
    assert sorted(m.recipient for m in await failed_webhooks(rules_store)) == ["fail", "hang"]


async def test_a_wrong_secret_is_refused_by_the_receiver(database: Database, cell: Cell, receiver: Receiver) -> None:
    ids = await seed(database)
    await use_taxonomy(database, cell, hooked_taxonomy(receiver.base))
    await run_for_message(context(database, cell), ids["yi"], "msg-1", ["售后工单"], NOW)
    async with aiohttp.ClientSession() as session:
        deliverer = WebhookDeliverer(session, cell, {"KEBIAO_WEBHOOK_SECRET": "wrong"}, timeout=0.5, clock=lambda: NOW)
        await drain(SqlAlertStore(database.engine), {"webhook": deliverer}, OutboxPolicy(), NOW)
    assert receiver.bad_signatures == 1 and receiver.received == []


class ChatLane:
    """The chat channel's deliverer as the outbox sees it (records the send; the platform is not the subject)."""

    channel = "msteams"
    resend_is_safe = False

    def __init__(self, order: list[str], expected: int) -> None:
        self.order = order
        self.expected = expected
        self.sent = asyncio.Event()

    async def deliver(self, message: OutboxMessage) -> Delivery:
        self.order.append(f"chat: sent to {message.recipient}")
        if sum(1 for e in self.order if e.startswith("chat:")) == self.expected:
            self.sent.set()
        return Delivery(DeliveryOutcome.SENT)


async def test_a_hanging_receiver_does_not_hold_back_other_endpoints_or_chat(database: Database, cell: Cell) -> None:
    """The hanging endpoint's first row is claimed first; the healthy endpoint's rows and the chat notices are
    delivered while it still hangs, and its own second row waits in its lane (one call in flight per endpoint)."""
    order: list[str] = []
    healthy_got = asyncio.Event()
    release = asyncio.Event()
    chat = ChatLane(order, expected=2)

    async def hang(request: web.Request) -> web.Response:
        order.append("hang: received")
        await release.wait()  # answers only once the test lets it
        order.append("hang: answered")
        return web.Response(status=200)

    async def ok(request: web.Request) -> web.Response:
        order.append("ok: received")
        if order.count("ok: received") == 2:
            healthy_got.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hang", hang)
    app.router.add_post("/ok", ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        ids = await seed(database)
        base = f"http://127.0.0.1:{server.port}"
        text = dump_taxonomy(load_builtin()).split("\nwebhooks:")[0]
        hooks = "".join(f"  - name: {n}\n    url: {base}/{n}\n" for n in ("hang", "ok"))
        taxonomy = load_taxonomy_text(
            text + f"\nwebhooks:\n{hooks}rules:\n  - name: 退款工单\n    trigger: message\n"
            "    when: {message_tag: 售后工单}\n    then:\n      - webhook: hang\n      - webhook: ok\n"
            "      - notify: [owner]\n"
        )
        await use_taxonomy(database, cell, taxonomy)
        for who in ("yi", "jia"):
            await run_for_message(context(database, cell), ids[who], f"msg-{who}", ["售后工单"], NOW)
        store = SqlAlertStore(database.engine)
        async with aiohttp.ClientSession() as session:
            deliverer = WebhookDeliverer(session, cell, {}, timeout=60, clock=lambda: NOW)
            drained = asyncio.create_task(drain(store, {"webhook": deliverer, "msteams": chat}, OutboxPolicy(), NOW))
            waited: asyncio.Future[Any] = asyncio.gather(healthy_got.wait(), chat.sent.wait())
            either: list[asyncio.Future[Any]] = [drained, waited]
            await asyncio.wait(either, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            assert healthy_got.is_set() and chat.sent.is_set() and not drained.done()
            # The notices (queued first) and the healthy calls went out while the hanging receiver held its call.
            assert order[0] == "chat: sent to 小李" and order.count("ok: received") == 2
            assert sorted(e for e in order if e.startswith("chat:")) == ["chat: sent to 小张", "chat: sent to 小李"]
            assert order.count("hang: received") == 1 and "hang: answered" not in order  # its second row waits
            release.set()
            report = await drained
        assert report.sent == 6 and order[-3:] == ["hang: answered", "hang: received", "hang: answered"]
    finally:
        await server.close()
