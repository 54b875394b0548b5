"""An expiry digest lists its first tags and counts the rest; "显示全部标签" opens every tag it covers.

Runs through the real create_app and POST /api/messages (adaptiveCard/action) with the fake Bot Connector.
"""
# ruff: noqa: F811  (every test takes the imported `kebiao` fixture)

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from app import DATABASE
from cards.alert import build_alert_card
from cards.present import alert_view_from_payload
from core.alerts.ports import NewOutboxMessage
from core.alerts.selection import Digest, ExpiringTag, dedupe_key, digest_notice
from storage.outbox import SqlAlertStore
from tests.teams.test_bot_flow import (  # noqa: F401  (kebiao is a fixture)
    AGENT,
    MANAGER,
    actions,
    card_action,
    kebiao,
    message,
    post,
    texts,
)

CARD = "application/vnd.microsoft.card.adaptive"
BOSS = {"id": "29:manager", "name": "张经理", "aadObjectId": MANAGER}
TZ = ZoneInfo("Asia/Shanghai")
TAGGED = {"ABC公司": ("高危流失", "VIP客户"), "华为上海": ("VIP客户",), "华为深圳": ("VIP客户",)}


async def _expiring(client: TestClient, url: str, now: datetime) -> list[ExpiringTag]:
    """Tag the customers (as the manager), give every tag an expiry 1..4 days out, return them as the scan would."""
    for n, (name, tags) in enumerate(TAGGED.items()):
        added = " ".join(f"+{t}" for t in tags)
        assert (await post(client, message(url, f"tag {name} {added}", f"t-{n}", **{"from": BOSS})))[0] == 200
    items: list[ExpiringTag] = []
    async with client.app[DATABASE].unit_of_work() as uow:
        for name in TAGGED:
            [customer] = await uow.customers.find_exact(name)
            for assignment in await uow.assignments.active_for(customer.id):
                expires = now + timedelta(days=1 + len(items))
                await uow.assignments.set_expiry(assignment.id, expires)
                items.append(
                    ExpiringTag(
                        assignment.id,
                        customer.id,
                        customer.name,
                        AGENT,
                        "华东",
                        assignment.dimension,
                        assignment.tag,
                        assignment.assigned_at,
                        expires,
                    )
                )
    return items


async def _digest_card(client: TestClient, recipient: str, items: list[ExpiringTag], now: datetime) -> Any:
    """Queue the digest for `recipient` listing two tags and counting the rest; the card Teams delivers."""
    digest = Digest(recipient, now.astimezone(TZ).date())
    for item in items:
        digest.add(item, 2)
    notice = digest_notice(digest, now, TZ)
    key = dedupe_key("expiry", "*", recipient, digest.day.isoformat())
    async with SqlAlertStore(client.app[DATABASE].engine).unit_of_work() as uow:
        await uow.outbox.enqueue(NewOutboxMessage(key, recipient, "teams", notice.to_payload()), now)
        [row] = await uow.outbox.claim(now, 10)
    return build_alert_card(alert_view_from_payload(row), now)


async def test_show_all_lists_every_tag_the_digest_covers_for_its_recipient(kebiao: Any) -> None:
    client, _fake, url = kebiao
    now = datetime.now(UTC)
    items = await _expiring(client, url, now)
    assert len(items) == 4
    digest = await _digest_card(client, MANAGER, items, now)
    assert "另有 2 个未列在此卡片中" in texts(digest)
    [show_all] = actions(digest, "alert.digest_all")
    assert show_all["title"] == "显示全部标签"

    await post(client, message(url, "tag 华为深圳 -VIP客户", "t-9", **{"from": BOSS}))
    async with client.app[DATABASE].unit_of_work() as uow:
        await uow.assignments.set_expiry(items[0].assignment_id, None)

    status, body = await post(client, card_action(url, "alert.digest_all", show_all["data"], "d-1", **{"from": BOSS}))
    assert status == 200 and body["type"] == CARD
    full = texts(body["value"])
    assert "4 个标签即将到期" in full and "另有" not in full
    for name, tags in TAGGED.items():
        for tag in tags:
            assert f"{name} · {tag}" in full
    assert "华为深圳 · VIP客户 已移除" in full and f"{items[0].customer_name} · {items[0].tag} 不再到期" in full
    assert not actions(body["value"], "alert.digest_all")  # everything is listed: no button to list more
    assert len(actions(body["value"], "customer.show")) == 4  # each row still opens its customer
    [ack] = actions(body["value"], "alert.ack")

    status, body = await post(client, card_action(url, "alert.ack", ack["data"], "d-2", **{"from": BOSS}))
    assert status == 200 and "已确认" in texts(body["value"])
    status, body = await post(client, card_action(url, "alert.digest_all", show_all["data"], "d-3", **{"from": BOSS}))
    assert status == 200 and "已确认" in texts(body["value"]) and not actions(body["value"], "alert.ack")


async def test_show_all_keeps_managers_only_tags_from_others_and_refuses_someone_elses_digest(kebiao: Any) -> None:
    client, _fake, url = kebiao
    now = datetime.now(UTC)
    items = await _expiring(client, url, now)
    digest = await _digest_card(client, AGENT, items, now)
    [show_all] = actions(digest, "alert.digest_all")

    status, body = await post(client, card_action(url, "alert.digest_all", show_all["data"], "o-1"))  # 王丽
    assert status == 200 and body["type"] == CARD
    full = texts(body["value"])
    assert full.count(" · VIP客户") == 3 and "高危流失" not in full

    status, body = await post(client, card_action(url, "alert.digest_all", show_all["data"], "o-2", **{"from": BOSS}))
    assert status == 200 and "只有收到提醒的人" in texts(body["value"]) and "VIP客户" not in texts(body["value"])

    gone = {"alert_id": show_all["data"]["alert_id"] + 500}
    status, body = await post(client, card_action(url, "alert.digest_all", gone, "o-3"))
    assert status == 200 and "does not exist" in texts(body["value"])
