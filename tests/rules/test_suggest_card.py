"""A rule's `suggest` reaches the owner in Teams as the suggestion card; its Accept / Reject work through the route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from app import DATABASE, SETTINGS, TAXONOMY, TEAMS, alert_deliverers, create_app, rule_context
from config import AlertSettings, Settings
from core.alerts.outbox import OutboxPolicy, drain
from core.records import CustomerDraft
from core.rules.service import run_daily
from core.taxonomy.store import import_taxonomy
from storage import tables as t
from storage.outbox import SqlAlertStore
from tagging.builtin import load_builtin
from tagging.loader import dump_taxonomy, load_taxonomy_text
from tests.teams.conftest import connector
from tests.teams.fake_connector import FakeConnector
from tests.teams.test_bot_flow import AGENT, actions, card_action, cards, message, post, texts

__all__ = ["connector"]

RULE = """
rules:
  - name: 华东大客户
    description: 华东的客户建议标为 VIP客户
    trigger: daily
    when:
      field: {name: region, in: [华东]}
    then:
      - suggest: VIP客户
"""


@pytest.fixture
async def kebiao(
    aiohttp_client: Any, tmp_path: Path, connector: tuple[FakeConnector, str]
) -> AsyncIterator[tuple[TestClient, FakeConnector, str]]:
    # Quiet hours off: the rule's alerts would otherwise wait for 08:00 when the test runs in the evening.
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'kebiao.db'}",
        scheduler_enabled=False,
        alerts=AlertSettings(quiet_hours="off"),
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    yield client, connector[0], connector[1]


async def test_a_rule_suggestion_card_accepts_and_rejects_through_the_teams_route(kebiao: Any) -> None:
    client, fake, url = kebiao
    app = client.app
    assert (await post(client, message(url, "你好", "hello-1")))[0] == 200  # stores 王丽's conversation
    now = datetime.now(UTC)
    database = app[DATABASE]
    async with database.unit_of_work() as uow:
        for name in ("甲公司", "乙公司"):
            await uow.customers.add(CustomerDraft(name=name, owner=AGENT, region="华东"), now)
        text = dump_taxonomy(load_builtin()).split("\nrules:")[0]
        change = await import_taxonomy(uow, load_taxonomy_text(text + RULE), "test", now)
    app[TAXONOMY].version = change.version
    ctx = rule_context(app[SETTINGS], database, lambda: app[TAXONOMY].taxonomy)
    report = await run_daily(ctx, now)
    assert report.rules["华东大客户"].suggested == 2
    async with aiohttp.ClientSession() as session:
        deliverers = alert_deliverers(app[SETTINGS], database, session, app[TEAMS].adapter)
        drained = await drain(SqlAlertStore(database.engine), deliverers, OutboxPolicy(), now)
    assert drained.sent == 2
    sent = [c for c in cards(fake) if actions(c, "suggestion.accept")]
    assert len(sent) == 2
    by_name = {("甲公司" if "甲公司" in texts(c) else "乙公司"): c for c in sent}
    for card in sent:
        content = texts(card)
        assert "建议为客户添加标签「VIP客户」" in content and "规则「华东大客户」" in content
        assert "区域 = 华东" in content and actions(card, "suggestion.reject")

    [accept] = actions(by_name["甲公司"], "suggestion.accept")
    status, answer = await post(client, card_action(url, "suggestion.accept", accept["data"], "click-1"))
    assert status == 200 and answer["statusCode"] == 200
    assert "已接受" in texts(answer["value"]) and not actions(answer["value"], "suggestion.accept")
    [reject] = actions(by_name["乙公司"], "suggestion.reject")
    status, answer = await post(client, card_action(url, "suggestion.reject", reject["data"], "click-2"))
    assert status == 200 and answer["statusCode"] == 200
    assert "已拒绝" in texts(answer["value"]) and not actions(answer["value"], "suggestion.reject")

    async with database.engine.connect() as conn:
        held = (
            await conn.execute(
                select(t.customers.c.name)
                .join(t.tag_assignments, t.tag_assignments.c.customer_id == t.customers.c.id)
                .where(t.tag_assignments.c.tag == "VIP客户", t.tag_assignments.c.state == "active")
            )
        ).all()
        decided = dict((await conn.execute(select(t.suggestions.c.customer_id, t.suggestions.c.status))).all())
    assert [name for (name,) in held] == ["甲公司"]
    assert sorted(decided.values()) == ["accepted", "rejected"]
