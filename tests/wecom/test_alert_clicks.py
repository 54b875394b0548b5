"""Alert card buttons in WeCom: 确认/暂停 through POST /wecom/callback store the action and update the card."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from app import DATABASE, create_app
from cards.wecom import button_key
from core import verbs
from core.alerts.ports import NewOutboxMessage
from core.alerts.selection import AlertNotice, Reason
from storage import tables as t
from storage.outbox import SqlAlertStore
from tests.wecom.callbacks import card_click_xml, settings_for
from tests.wecom.fake_api import FakeWeComApi
from tests.wecom.test_routes import post, settle

RAISED = datetime(2025, 3, 1, 1, 0, tzinfo=UTC)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi) -> AsyncIterator[TestClient]:
    yield await aiohttp_client(create_app(settings_for(tmp_path, fake_wecom.api_base)))


async def _alert(client: TestClient, recipient: str) -> int:
    """An alert for 云帆科技 queued for `recipient`; returns its outbox id (the id the buttons carry)."""
    notice = AlertNotice(
        rule="churn",
        title="流失风险：云帆科技",
        customer_id=7,
        customer_name="云帆科技",
        reasons=(Reason("silence", 0.6, "45 天没有对话"), Reason("agent_removed", 0.4, "客户删除了顾问")),
        raised_at=RAISED,
        alert_key="churn:7:2025-03-01",
        snooze_key="churn:7",
    )
    store = SqlAlertStore(client.app[DATABASE].engine)
    async with store.unit_of_work() as uow:
        message = NewOutboxMessage("churn:7:2025-03-01:wangjingli", recipient, "wecom", notice.to_payload())
        await uow.outbox.enqueue(message, RAISED)
    async with client.app[DATABASE].engine.connect() as conn:
        return int((await conn.execute(select(t.outbox.c.id))).scalar_one())


async def _acks(client: TestClient) -> list[tuple[str, str, str]]:
    k = t.alert_acknowledgements.c
    async with client.app[DATABASE].engine.connect() as conn:
        rows = await conn.execute(select(k.alert_key, k.user_id, k.action).order_by(k.id))
        return [(r[0], r[1], r[2]) for r in rows]


async def test_acknowledge_click_records_and_redraws_the_card_without_buttons(
    client: TestClient, fake_wecom: FakeWeComApi
) -> None:
    alert_id = await _alert(client, "wangjingli")
    status, _ = await post(client, card_click_xml(button_key(verbs.ALERT_ACK, [alert_id]), user="wangjingli"))
    assert status == 200
    await settle(client)
    assert await _acks(client) == [("churn:7:2025-03-01", "wangjingli", "ack")]
    (update,) = fake_wecom.calls_to("message/update_template_card")
    assert update.body is not None and update.body["response_code"] == "rc-click-1"
    card = update.body["template_card"]
    keys = [b["key"] for b in card["button_list"]]
    assert keys == [button_key(verbs.CUSTOMER_SHOW, [7])]  # acknowledged: only "show customer" is left


async def test_snooze_click_silences_the_rule_and_marks_the_button(
    client: TestClient, fake_wecom: FakeWeComApi
) -> None:
    alert_id = await _alert(client, "wangjingli")
    await post(client, card_click_xml(button_key(verbs.ALERT_SNOOZE, [alert_id]), user="wangjingli"))
    await settle(client)
    assert await _acks(client) == [("churn:7", "wangjingli", "snooze")]
    (update,) = fake_wecom.calls_to("message/update_template_card")
    assert update.body is not None and update.body["button"] == {"replace_name": "已暂停提醒"}


async def test_someone_elses_alert_is_refused_with_a_message(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    alert_id = await _alert(client, "wangjingli")
    await post(client, card_click_xml(button_key(verbs.ALERT_ACK, [alert_id]), user="xiaozhang"))
    await post(client, card_click_xml(button_key(verbs.ALERT_ACK, [alert_id + 50]), user="xiaozhang", created=2))
    await settle(client)
    assert await _acks(client) == []
    assert fake_wecom.calls_to("message/update_template_card") == []
    sent = [c.body for c in fake_wecom.calls_to("message/send")]
    assert len(sent) == 2 and all(b and b["touser"] == "xiaozhang" for b in sent)
    texts = " ".join(b["markdown"]["content"] for b in sent if b)
    assert "someone else" in texts and "does not exist" in texts
