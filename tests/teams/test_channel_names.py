"""Channel names by the convention "[VIP]ABC公司-合同续约中": the link offer on channelCreated / channelRenamed."""

from __future__ import annotations

from typing import Any

import pytest

from core import verbs
from tests.teams.conftest import load_payload
from tests.teams.test_bot_flow import actions, card_action, cards, kebiao, message, post, texts

__all__ = ["kebiao"]

CHANNEL_ID = "19:0c8c0f4a1b2d4e6f8a9b@thread.tacv2"


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
    assert "[VIP]ABC公司-合同续约中" in texts(offer).replace("［", "[").replace("］", "]")
    [button] = actions(offer, verbs.CHANNEL_LINK)
    assert button["data"]["channel_id"] == CHANNEL_ID
    click = card_action(url, verbs.CHANNEL_LINK, button["data"], f"click-{event}")
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
async def test_a_forged_or_stale_link_button_gets_an_error_card_not_a_500(kebiao: Any, data: dict[str, Any]) -> None:
    client, _, url = kebiao
    status, body = await post(client, card_action(url, verbs.CHANNEL_LINK, data, "forged"))
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
