"""Proactive sends through the real CloudAdapter to the fake connector: retries, throttling, references."""

from __future__ import annotations

import json

import pytest
from botbuilder.schema import Activity

from bots.teams.notifier import (
    ConversationUnavailable,
    DeliveryStatus,
    RetryPolicy,
)
from bots.teams.references import InvalidReference, StoredReference
from tests.teams.conftest import FakeTime, load_payload, local_notifier
from tests.teams.fake_connector import FakeConnector
from tests.teams.tokens import BOT_TOKEN, OpenIdServer

Connector = tuple[FakeConnector, str]
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CARD = {
    "type": "AdaptiveCard",
    "version": "1.5",
    "body": [{"type": "TextBlock", "text": "ABC公司 标签即将到期"}],
}


def _reference(url: str, name: str = "personal_message") -> StoredReference:
    return StoredReference.from_activity(Activity().deserialize(load_payload(name, url)))


def test_reference_keeps_the_tenant_that_conversation_reference_drops() -> None:
    reference = _reference("https://smba.trafficmanager.net/apac/")
    assert reference.tenant_id == TENANT
    assert reference.user_aad_id == "6c1b5c2e-1f0a-4c55-9d55-3a5c2f1e0a11"
    assert reference.key == reference.conversation_id == "a:1Qy8XcPersonalWangLi"
    restored = StoredReference(**json.loads(json.dumps(reference.__dict__))).conversation_reference()
    assert restored.conversation.tenant_id == TENANT
    assert restored.service_url == "https://smba.trafficmanager.net/apac/"
    assert restored.user.name == "王丽"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("key", "", "key is empty"),
        ("reference_json", "{", "not JSON"),
        ("reference_json", "{}", "conversation.id"),
        ("service_url", "", "service_url is empty"),
    ],
)
def test_unusable_stored_reference_is_refused(field: str, value: str, message: str) -> None:
    data = dict(_reference("https://smba.trafficmanager.net/apac/").__dict__)
    data[field] = value
    with pytest.raises(InvalidReference, match=message):
        StoredReference(**data)


async def test_card_reaches_the_connector_with_tenant_and_bot_token(
    connector: Connector, openid: OpenIdServer
) -> None:
    fake, url = connector
    notifier = local_notifier(openid, FakeTime(1000.0))
    result = await notifier.send_card(_reference(url), CARD)
    assert result.status is DeliveryStatus.DELIVERED
    [call] = fake.calls
    assert result.activity_id == "1:1"
    assert call.path == "/v3/conversations/a:1Qy8XcPersonalWangLi/activities"
    assert call.authorization == f"Bearer {BOT_TOKEN}"
    assert call.body["conversation"]["tenantID"] == TENANT
    assert call.body["channelData"]["tenant"]["id"] == TENANT
    assert call.body["attachments"][0]["content"] == CARD


async def test_429_twice_then_success_honours_retry_after(connector: Connector, openid: OpenIdServer) -> None:
    fake, url = connector
    fake_time = FakeTime(1000.0)
    notifier = local_notifier(openid, fake_time)
    fake.fail(429, times=2, retry_after="2")
    result = await notifier.send_card(_reference(url), CARD)
    assert result.status is DeliveryStatus.DELIVERED
    assert [call.status for call in fake.calls] == [429, 429, 201]
    assert fake_time.sleeps == [2.0, 2.0]


async def test_403_is_undeliverable_at_once(connector: Connector, openid: OpenIdServer) -> None:
    fake, url = connector
    notifier = local_notifier(openid, FakeTime(1000.0))
    fake.fail(403, times=10)
    result = await notifier.send_card(_reference(url), CARD)
    assert result.status is DeliveryStatus.UNDELIVERABLE
    assert "403" in result.reason and "ConversationBlockedByUser" in result.reason
    assert len(fake.calls) == 1


async def test_404_conversation_gone_is_undeliverable(connector: Connector, openid: OpenIdServer) -> None:
    fake, url = connector
    fake.fail(404)
    result = await local_notifier(openid, FakeTime(1000.0)).send_card(_reference(url), CARD)
    assert result.status is DeliveryStatus.UNDELIVERABLE
    assert "ConversationNotFound" in result.reason


async def test_5xx_backs_off_then_asks_to_retry_later(connector: Connector, openid: OpenIdServer) -> None:
    fake, url = connector
    fake_time = FakeTime(1000.0)
    notifier = local_notifier(openid, fake_time, retry=RetryPolicy(max_attempts=3, base_delay=0.5))
    fake.fail(502, times=5)
    result = await notifier.send_card(_reference(url), CARD)
    assert result.status is DeliveryStatus.RETRY_LATER
    assert "502" in result.reason and "after 3 attempts" in result.reason
    assert len(fake.calls) == 3
    assert fake_time.sleeps == [0.5, 1.0]


async def test_long_retry_after_is_handed_back_to_the_caller(
    connector: Connector, openid: OpenIdServer
) -> None:
    fake, url = connector
    fake.fail(429, retry_after="600")
    result = await local_notifier(openid, FakeTime(1000.0)).send_card(_reference(url), CARD)
    assert result.status is DeliveryStatus.RETRY_LATER
    assert "Retry-After 600s" in result.reason
    assert len(fake.calls) == 1


async def test_unreachable_connector_is_retry_later(openid: OpenIdServer) -> None:
    notifier = local_notifier(openid, FakeTime(1000.0), retry=RetryPolicy(max_attempts=1))
    result = await notifier.send_card(_reference("http://127.0.0.1:9/"), CARD)
    assert result.status is DeliveryStatus.RETRY_LATER
    assert "transport error" in result.reason


async def test_burst_is_throttled_per_conversation(connector: Connector, openid: OpenIdServer) -> None:
    fake, url = connector
    fake_time = FakeTime(1000.0)
    notifier = local_notifier(openid, fake_time)
    reference = _reference(url)
    for _ in range(9):
        assert (await notifier.send_card(reference, CARD)).status is DeliveryStatus.DELIVERED
    assert fake_time.sleeps == [1.0, 1.0]  # 7 at once, then one per second
    other = _reference(url, "channel_message_mention")
    assert (await notifier.send_card(other, CARD)).status is DeliveryStatus.DELIVERED
    assert fake_time.sleeps == [1.0, 1.0]  # another conversation has its own bucket
    assert len(fake.calls) == 10


async def test_open_personal_conversation_then_send(connector: Connector, openid: OpenIdServer) -> None:
    fake, url = connector
    notifier = local_notifier(openid, FakeTime(1000.0))
    reference = await notifier.open_personal_conversation(url, TENANT, "29:1mZ9ManagerZhangWei")
    create = fake.calls[0]
    assert create.path == "/v3/conversations"
    assert create.body["members"] == [{"id": "29:1mZ9ManagerZhangWei"}]
    assert create.body["channelData"] == {"tenant": {"id": TENANT}}
    assert reference.tenant_id == TENANT
    assert reference.key == "29:1mZ9ManagerZhangWei"
    assert (await notifier.send_card(reference, CARD)).status is DeliveryStatus.DELIVERED
    assert fake.calls[1].conversation_id == "a:personal-29:1mZ9ManagerZhangWei"


async def test_open_personal_conversation_forbidden(connector: Connector, openid: OpenIdServer) -> None:
    fake, url = connector
    fake.fail(
        403, code="BotNotInConversationRoster", message="The bot is not part of the conversation roster."
    )
    with pytest.raises(ConversationUnavailable) as caught:
        await local_notifier(openid, FakeTime(1000.0)).open_personal_conversation(url, TENANT, "29:1unknown")
    assert caught.value.result.status is DeliveryStatus.UNDELIVERABLE
    assert "BotNotInConversationRoster" in caught.value.result.reason
