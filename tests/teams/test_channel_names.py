"""Channel names by the convention "[VIP]ABC公司-合同续约中": the link offer on channelCreated / channelRenamed,
posted in the channel it is about, with a signed Link button (both databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from app import DATABASE, create_app
from config import Settings, TeamsSettings
from core import verbs
from core.chat.link_offers import seal_offer
from core.records import CustomerDraft
from storage.channels import SqlChannelStore
from tests.teams.conftest import load_payload
from tests.teams.fake_connector import FakeConnector
from tests.teams.test_bot_flow import actions, card_action, cards, message, post, texts

CHANNEL_ID = "19:0c8c0f4a1b2d4e6f8a9b@thread.tacv2"
GENERAL_ID = "19:b1c2d3e4f5a6@thread.tacv2"  # where the recorded channelCreated event arrives; also the team id
TEAM_ID = GENERAL_ID
LINK_SECRET = "link-secret-for-tests-0123456789abcdef"
ZONE = ZoneInfo("Asia/Shanghai")  # KEBIAO_TIMEZONE's default: the card names the day in it


@pytest.fixture
async def kebiao(
    aiohttp_client: Any, tmp_path: Path, connector: tuple[FakeConnector, str], database_url: str
) -> AsyncIterator[tuple[TestClient, FakeConnector, str]]:
    settings = Settings(
        database_url=database_url, scheduler_enabled=False, teams=TeamsSettings(link_secret=LINK_SECRET)
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    async with client.app[DATABASE].unit_of_work() as uow:
        now = datetime.now(UTC)
        await uow.customers.add(CustomerDraft(name="ABC公司", company="ABC贸易", region="华东"), now)
        await uow.customers.add(CustomerDraft(name="华为上海", region="华东"), now)
        await uow.customers.add(CustomerDraft(name="华为深圳", region="华南"), now)
    fake, url = connector
    yield client, fake, url


def channel_click(url: str, data: dict[str, Any], activity_id: str, team_id: str = TEAM_ID) -> dict[str, Any]:
    """An Action.Execute click on a card posted in the new channel (its conversation, its team)."""
    body = card_action(url, verbs.CHANNEL_LINK, data, activity_id)
    body["conversation"] = {
        "isGroup": True,
        "conversationType": "channel",
        "tenantId": body["conversation"]["tenantId"],
        "id": f"{CHANNEL_ID};messageid=1732500000123",
    }
    body["channelData"] = {
        **body["channelData"],
        "channel": {"id": CHANNEL_ID},
        **({"team": {"id": team_id}} if team_id else {}),
    }
    return body


async def linked_customer(client: TestClient) -> int | None:
    link = await SqlChannelStore(client.app[DATABASE].engine).linked("teams", CHANNEL_ID)
    return link.customer_id if link is not None else None


def channel_event(
    url: str, activity_id: str, name: Any = "[VIP]ABC公司-合同续约中", event: str = "channelCreated"
) -> dict[str, Any]:
    body = load_payload("conversation_update_channel_created", url)
    body["id"] = activity_id
    body["channelData"]["eventType"] = event
    body["channelData"]["channel"]["name"] = name
    return body


@pytest.mark.parametrize("event", ["channelCreated", "channelRenamed"])
async def test_a_conventionally_named_channel_gets_a_link_offer_and_the_button_links_it(
    kebiao: Any, event: str
) -> None:
    client, fake, url = kebiao
    status, _ = await post(client, channel_event(url, f"c-{event}", event=event))
    assert status == 200
    [offer] = cards(fake)
    # Posted as a new message in the channel that was created/renamed, not in General where the event arrived.
    [sent] = fake.delivered
    assert (sent.conversation_id, sent.reply_to_id) == (CHANNEL_ID, "")
    assert "[VIP]ABC公司-合同续约中" in texts(offer).replace("［", "[").replace("］", "]")
    [button] = actions(offer, verbs.CHANNEL_LINK)
    assert button["data"]["channel_id"] == CHANNEL_ID and button["data"]["team_id"] == TEAM_ID
    assert len(button["data"]["sig"]) == 64 and button["data"]["expires"] > datetime.now(UTC).timestamp()
    click = channel_click(url, button["data"], f"click-{event}")
    status, body = await post(client, click)
    assert status == 200 and "ABC公司" in texts(body["value"]) and "已绑定到 ABC公司" in texts(body["value"])
    assert "VIP" in texts(body["value"])  # the note names the channel that was linked, not this conversation
    # Now a message in that channel is matched for ABC公司: its suggestion card names the customer.
    channel_message = load_payload("channel_message_mention", url)
    channel_message.update(
        text="能给我报价吗",
        id="in-channel-1",
        entities=[],
        conversation={**channel_message["conversation"], "id": CHANNEL_ID + ";messageid=1"},
    )
    await post(client, channel_message)
    assert "询价客户" in texts(cards(fake)[-1])
    # Renaming it again to the same customer offers nothing more: it is linked already.
    before = len(cards(fake))
    await post(client, channel_event(url, f"again-{event}", event="channelRenamed"))
    assert len(cards(fake)) == before


@pytest.mark.parametrize(
    "name",
    [
        "ABC公司-合同续约中",  # no core tag
        "[VIP]ABC公司",  # no stage
        "[VIP] ABC公司 合同续约中",  # no dash
        "[VIP ABC公司-合同续约中",  # unclosed bracket
        "[]ABC公司-合同续约中",  # empty core tag
        "[VIP]-合同续约中",  # no customer
        "[VIP]ABC-合同续约中",  # a customer that does not exist
        "[VIP]华为-合同续约中",  # only part of two customers' names
        "   ",
        12345,
        None,
        "[VIP]" + "很长" * 200 + "-续约",
    ],
)
async def test_near_misses_and_bad_names_post_nothing(kebiao: Any, name: Any) -> None:
    client, fake, url = kebiao
    status, _ = await post(client, channel_event(url, "near-miss", name=name))
    assert status == 200 and cards(fake) == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda b: b["channelData"].pop("channel"), id="no-channel"),
        pytest.param(lambda b: b["channelData"]["channel"].pop("id"), id="no-channel-id"),
        pytest.param(lambda b: b["channelData"]["channel"].pop("name"), id="no-name"),
        pytest.param(lambda b: b["channelData"].update(channel="19:x@thread.tacv2"), id="channel-not-object"),
        pytest.param(lambda b: b["channelData"]["channel"].update(id="not-a-thread"), id="channel-id-not-a-thread"),
        pytest.param(lambda b: b.update(channelData=None), id="no-channel-data"),
        pytest.param(lambda b: b["channelData"].update(eventType="channelDeleted"), id="deleted"),
        pytest.param(lambda b: b.pop("from"), id="no-from"),
    ],
)
async def test_channel_events_with_missing_fields_post_nothing_and_never_fail(kebiao: Any, change: Any) -> None:
    client, fake, url = kebiao
    body = channel_event(url, "bad-event")
    change(body)
    status, _ = await post(client, body)
    assert status in (200, 400) and cards(fake) == []


@pytest.mark.parametrize(
    "data",
    [
        {"channel_id": "not-a-thread", "customer_id": 1},
        {"channel_id": CHANNEL_ID, "customer_id": 999999},
        {"channel_id": CHANNEL_ID},
        {"customer_id": 1},
    ],
)
async def test_a_malformed_link_button_gets_an_error_card_not_a_500(kebiao: Any, data: dict[str, Any]) -> None:
    client, _, url = kebiao
    status, body = await post(client, channel_click(url, data, "forged"))
    assert status == 200
    shown = texts(body["value"])  # an error card (its language follows the detail's)
    assert "出错了" in shown or "Something went wrong" in shown


async def test_the_customer_card_offers_the_conventional_name(kebiao: Any) -> None:
    client, fake, url = kebiao
    await post(client, message(url, "tag ABC公司 +VIP客户 +询价客户", "n-1"))
    await post(client, message(url, "查看 ABC公司", "n-2"))
    summary = cards(fake)[-1]
    runs = [
        inline["text"]
        for block in summary["body"]
        if block.get("type") == "RichTextBlock"
        for inline in block["inlines"]
    ]
    assert "[VIP客户]ABC公司-询价客户" in runs  # verbatim: copied as is, the convention reads it back


async def test_the_offer_falls_back_to_where_the_event_arrived_when_the_channel_refuses(kebiao: Any) -> None:
    client, fake, url = kebiao
    fake.fail(403, code="BotNotInConversationRoster", message="The bot is not part of the conversation roster.")
    status, _ = await post(client, channel_event(url, "c-fallback"))
    assert status == 200
    refused, posted = fake.calls
    assert (refused.conversation_id, refused.status) == (CHANNEL_ID, 403)
    assert (posted.conversation_id, posted.status) == (GENERAL_ID, 201)
    [offer] = cards(fake)
    [button] = actions(offer, verbs.CHANNEL_LINK)
    status, body = await post(client, channel_click(url, button["data"], "click-fallback"))
    assert "已绑定到 ABC公司" in texts(body["value"])  # a click in General is in the same team: it links
    assert await linked_customer(client) is not None


async def _offer_data(client: TestClient, fake: FakeConnector, url: str) -> dict[str, Any]:
    await post(client, channel_event(url, "c-signed"))
    [button] = actions(cards(fake)[-1], verbs.CHANNEL_LINK)
    return dict(button["data"])


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda d, other: d.update(customer_id=other), id="other-customer"),
        pytest.param(lambda d, other: d.update(channel_id="19:ffff0000ffff@thread.tacv2"), id="other-channel"),
        pytest.param(lambda d, other: d.update(team_id="19:someoneelse@thread.tacv2"), id="other-team-id"),
        pytest.param(lambda d, other: d.update(expires=d["expires"] + 86400 * 365), id="later-expiry"),
        pytest.param(lambda d, other: d.update(sig=d["sig"][:-1] + ("0" if d["sig"][-1] != "0" else "1")), id="sig"),
        pytest.param(lambda d, other: d.pop("sig"), id="no-sig"),
        pytest.param(lambda d, other: d.pop("expires"), id="no-expiry"),
        pytest.param(lambda d, other: d.update(sig=None), id="sig-not-text"),
    ],
)
async def test_a_forged_or_altered_click_is_refused_and_links_nothing(kebiao: Any, alter: Any) -> None:
    client, fake, url = kebiao
    data = await _offer_data(client, fake, url)
    async with client.app[DATABASE].unit_of_work(read_only=True) as uow:
        (other,) = await uow.customers.find_exact("华为深圳")
    alter(data, other.id)
    status, body = await post(client, channel_click(url, data, "forged-click"))
    assert status == 200
    shown = texts(body["value"])
    assert "出错了" in shown and "不是客标签发的（被伪造或改动过），没有绑定" in shown
    assert await linked_customer(client) is None


async def test_a_button_signed_under_another_key_is_refused(kebiao: Any) -> None:
    client, fake, url = kebiao
    data = await _offer_data(client, fake, url)
    seal = seal_offer(b"another-deployment-key", CHANNEL_ID, int(data["customer_id"]), TEAM_ID, datetime.now(UTC))
    _, body = await post(client, channel_click(url, data | seal.data(), "other-key"))
    assert "被伪造或改动过" in texts(body["value"]) and await linked_customer(client) is None


async def test_an_expired_offer_says_so_and_links_nothing(kebiao: Any) -> None:
    client, fake, url = kebiao
    data = await _offer_data(client, fake, url)
    # A genuine offer made 15 days ago (by any replica: they share the key).
    issued = datetime.now(UTC) - timedelta(days=15)
    seal = seal_offer(LINK_SECRET.encode(), CHANNEL_ID, int(data["customer_id"]), TEAM_ID, issued)
    status, body = await post(client, channel_click(url, data | seal.data(), "expired"))
    assert status == 200
    shown = texts(body["value"])
    day = (issued + timedelta(days=14)).astimezone(ZONE).date().isoformat()
    assert f"这个绑定按钮已于 {day} 过期，没有绑定" in shown and "重新命名频道" in shown
    assert await linked_customer(client) is None


async def test_a_genuine_button_clicked_outside_its_team_is_refused(kebiao: Any) -> None:
    client, fake, url = kebiao
    data = await _offer_data(client, fake, url)
    for activity_id, team in (("other-team", "19:anotherteam@thread.tacv2"), ("no-team", "")):
        _, body = await post(client, channel_click(url, data, activity_id, team_id=team))
        assert "只能在它所属的团队里使用" in texts(body["value"])
    personal = card_action(url, verbs.CHANNEL_LINK, data, "from-personal-chat")  # forwarded to a 1:1 chat
    _, body = await post(client, personal)
    assert "只能在它所属的团队里使用" in texts(body["value"])
    assert await linked_customer(client) is None
