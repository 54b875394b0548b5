"""Message rules through the real Teams route: a complaint tags 紧急工单 and alerts the owner at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from app import DATABASE, create_app
from config import Settings
from core.records import CustomerDraft
from storage import tables as t
from tests.teams.conftest import connector, load_payload
from tests.teams.fake_connector import FakeConnector
from tests.teams.test_bot_flow import post

__all__ = ["connector"]


@pytest.fixture
async def kebiao(aiohttp_client: Any, tmp_path: Path, connector: tuple[FakeConnector, str]) -> AsyncIterator[Any]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'kebiao.db'}",
        scheduler_enabled=False,
        webhook_env={"KEBIAO_WEBHOOK_TICKETS_URL": "https://tickets.example.com/hook"},
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    async with client.app[DATABASE].unit_of_work() as uow:
        await uow.customers.add(CustomerDraft(name="ABC公司", owner="owner-1", region="华东"), datetime.now(UTC))
    yield client, connector[1]


async def test_a_complaint_in_a_linked_chat_tags_and_alerts_the_owner_and_a_refund_calls_the_ticket_hook(
    kebiao: Any,
) -> None:
    client, url = kebiao
    body = load_payload("channel_message_mention", url)
    body.update(text="<at>客标</at> 绑定 ABC公司", id="link-1")
    assert (await post(client, body))[0] == 200
    complaint = dict(body, text="<at>客标</at> 我要投诉，你们必须加急处理", id="msg-complaint")
    assert (await post(client, complaint))[0] == 200
    refund = dict(body, text="<at>客标</at> 上次的货有问题，我要退款", id="msg-refund")
    assert (await post(client, refund))[0] == 200
    async with client.app[DATABASE].engine.connect() as conn:
        rows = (await conn.execute(select(t.outbox).order_by(t.outbox.c.id))).all()
        events = (await conn.execute(select(t.customer_events.c.kind, t.customer_events.c.event_id))).all()
        tags = (await conn.execute(select(t.tag_assignments.c.tag, t.tag_assignments.c.state))).all()
    alert = next(r for r in rows if r.payload.get("rule") == "rule:投诉加急")
    assert alert.recipient == "owner-1" and alert.payload["title"] == "客户投诉/加急，请尽快处理"
    assert "本条消息匹配 紧急工单" in [r["text"] for r in alert.payload["reasons"]]
    [ticket] = [r for r in rows if r.channel == "webhook"]
    assert ticket.recipient == "tickets" and ticket.payload["body"]["rule"] == "退款售后"
    assert {("紧急工单", "active"), ("售后工单", "active")} <= set(tags)
    assert [kind for kind, _ in events] == ["message", "message"]  # the product's own customer events
    assert all(event_id.startswith("message:") for _, event_id in events)
