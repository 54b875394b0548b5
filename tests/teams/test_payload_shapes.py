"""Payload shapes Teams publishes: shared conversations, card clicks, card refreshes, extension command ids.

Each test starts from an activity as Microsoft's Teams documentation publishes it (tests/payloads/teams/
published/, sources listed there) and runs it through the real create_app, POST /api/messages and the real
botbuilder adapter against the fake Bot Connector.
"""
# ruff: noqa: F811  (every test takes the imported `kebiao` fixture)

from __future__ import annotations

import copy
from typing import Any

import pytest
from botbuilder.schema import Activity

from app import DATABASE
from bots.teams.scope import is_shared
from tests.teams.conftest import load_payload
from tests.teams.published import load_published, published_names
from tests.teams.test_bot_flow import (  # noqa: F401  (kebiao is a fixture)
    actions,
    card_action,
    cards,
    kebiao,
    message,
    post,
    texts,
)

CARD = "application/vnd.microsoft.card.adaptive"
ERROR = "application/vnd.microsoft.error"
URL = "https://smba.trafficmanager.net/amer/"


def activity(name: str, **changes: Any) -> Activity:
    body = load_published(name, URL)
    body.update(changes)
    return Activity().deserialize(body)


# ---------------------------------------------------------------- which conversations are shared


SHARED = [
    "message_channel_user_mention_v4",  # no conversationType, no isGroup: only the @thread id says so
    "message_back_channel",  # no conversationType: channelData.team / channel and the id
    "compose_extension_fetch_task_meeting_chat",  # meeting chat: neither type nor isGroup
    "compose_extension_fetch_task_group_chat",
    "conversation_update_channel_created",
    "invoke_card_action_without_name",  # a chat between two people (@unq.gbl.spaces) plus channelData
    "event_meeting_start",
]
ONE_TO_ONE = ["message_personal_full_inbound", "message_personal_rich_text"]


@pytest.mark.parametrize("name", SHARED)
def test_published_channel_group_and_meeting_conversations_are_shared(name: str) -> None:
    assert is_shared(activity(name))


@pytest.mark.parametrize("name", ONE_TO_ONE)
def test_published_personal_chats_are_not_shared(name: str) -> None:
    assert not is_shared(activity(name))


@pytest.mark.parametrize(
    ("conversation", "channel_data", "shared"),
    [
        ({"id": "19:abc@thread.skype;messageid=1"}, None, True),
        ({"id": "19:abc@thread.tacv2"}, None, True),
        ({"id": "19:meeting_abc@thread.v2"}, None, True),
        ({"id": "19:u1_u2@unq.gbl.spaces"}, None, True),
        ({"id": "opaque"}, {"team": {"id": "19:t@thread.skype"}}, True),
        ({"id": "opaque"}, {"channel": {"id": "19:c@thread.skype"}}, True),
        ({"id": "opaque", "isGroup": True}, None, True),
        ({"id": "opaque", "conversationType": "groupChat"}, None, True),
        ({"id": "opaque", "conversationType": "channel"}, None, True),
        ({"id": "a:1personal"}, {"tenant": {"id": "t"}}, False),
        ({"id": "19:abc@thread.skype", "conversationType": "personal"}, None, False),  # explicit type wins
        ({"id": "opaque"}, {"team": None, "channel": {}}, False),
    ],
)
def test_every_signal_of_a_shared_conversation_counts(
    conversation: dict[str, Any], channel_data: dict[str, Any] | None, shared: bool
) -> None:
    body = {"type": "message", "conversation": conversation, "channelData": channel_data}
    assert is_shared(Activity().deserialize(body)) is shared


def test_every_published_payload_reads_as_an_activity() -> None:
    for name in published_names():
        assert Activity().deserialize(load_published(name, URL)) is not None, name


# ---------------------------------------------------------------- channel messages in the older shape


def _mention_bot(body: dict[str, Any], text: str, activity_id: str) -> dict[str, Any]:
    """The published channel message, now @mentioning the bot (its recipient) with `text`."""
    bot = body["recipient"]
    at = f"<at>{bot['name']}</at>"
    entity = {"type": "mention", "mentioned": {"id": bot["id"], "name": bot["name"]}, "text": at}
    return dict(body, text=f"{at} {text}", entities=[entity], id=activity_id)


async def test_older_channel_message_mentioning_a_person_gets_no_reply(kebiao: Any) -> None:
    client, fake, url = kebiao
    body = load_published("message_channel_user_mention_v4", url)
    assert "conversationType" not in body["conversation"] and "isGroup" not in body["conversation"]
    status, _ = await post(client, body)
    assert status == 200
    assert fake.calls == []  # no "没有听懂这条消息" help card in the thread
    addressed = _mention_bot(body, "帮助", "m-help")
    assert (await post(client, addressed))[0] == 200
    assert "使用帮助" in texts(cards(fake)[-1])  # an @mention of the bot is still answered


async def test_older_channel_messages_in_a_linked_channel_get_only_the_suggestions_asked_for(kebiao: Any) -> None:
    client, fake, url = kebiao
    body = load_published("message_channel_user_mention_v4", url)
    await post(client, _mention_bot(body, "绑定 ABC公司", "m-link"))
    assert "本会话已绑定到 ABC公司" in texts(cards(fake)[0])
    await post(client, dict(body, id="m-chat"))  # "Hey <at>Pranav Smith</at> check out this message"
    assert len(cards(fake)) == 1  # nothing to match: no card, no help
    await post(client, dict(body, id="m-quote", text="Hey <at>Pranav Smith</at> 客户想要报价单"))
    [_, suggestion] = cards(fake)
    assert "询价客户" in texts(suggestion) and actions(suggestion, "suggestion.accept")


async def test_messages_without_an_id_are_each_matched(kebiao: Any) -> None:
    client, fake, url = kebiao
    body = load_published("message_channel_user_mention_v4", url)  # published without an "id"
    await post(client, _mention_bot(body, "绑定 ABC公司", "m-link"))
    await post(client, dict(body, text="客户想要报价单"))
    await post(client, dict(body, text="客户又问了一次报价", timestamp="2017-10-29T00:52:05.1Z"))
    suggestions = [c for c in cards(fake) if actions(c, "suggestion.accept")]
    assert ["询价客户" in texts(s) for s in suggestions] == [True, True]  # the second is not taken for a retry
    await post(client, dict(body, text="客户又问了一次报价", timestamp="2017-10-29T00:52:05.1Z"))  # a retry
    # Without an activity id no claim stops the retry: the message is known, so its stored card is sent again
    # (a reply never lost after a crash) and no second suggestion is made.
    again = [c for c in cards(fake) if actions(c, "suggestion.accept")]
    assert len(again) == 3 and again[2] == again[1]


# ---------------------------------------------------------------- messageBack clicks


async def test_published_message_back_click_in_a_channel_is_silent(kebiao: Any) -> None:
    client, fake, url = kebiao
    body = load_published("message_back_channel", url)
    assert body["value"] == {"property": "propertyValue"} and body["text"]
    assert (await post(client, body))[0] == 200
    assert fake.calls == []  # not read as typed text, so no "didn't understand"
    as_string = dict(body, id="f:click-2", value='{"property": "propertyValue"}')  # value may be a JSON string
    assert (await post(client, as_string))[0] == 200
    assert fake.calls == []


async def test_message_back_click_with_a_card_verb_replaces_the_card_it_came_from(kebiao: Any) -> None:
    client, fake, url = kebiao
    body = load_published("message_back_channel", url)
    mentioned = _mention_bot(dict(body, value=None), "绑定 ABC公司", "f:link")
    await post(client, mentioned)
    await post(client, dict(mentioned, id="f:quote", text="客户想要报价单", entities=[]))
    [accept] = actions(cards(fake)[-1], "suggestion.accept")
    posted = len(fake.calls)
    click = dict(body, value={"verb": "suggestion.accept", "data": accept["data"]})
    assert (await post(client, click))[0] == 200
    [update] = fake.calls[posted:]
    assert update.method == "PUT" and update.path.endswith("/activities/1575667808184")  # the published replyToId
    assert "已接受 · John Smith" in texts(update.body["attachments"][0]["content"])
    async with client.app[DATABASE].unit_of_work() as uow:
        assert "询价客户" in {a.tag for a in await uow.assignments.active_for(1)}


async def test_refused_message_back_click_is_silent_in_a_channel_and_explained_in_a_personal_chat(
    kebiao: Any,
) -> None:
    client, fake, url = kebiao
    gone = {"verb": "suggestion.accept", "data": {"suggestion_id": 999}}
    body = dict(load_published("message_back_channel", url), value=gone)
    assert (await post(client, body))[0] == 200
    assert fake.calls == []
    personal = message(url, "User just clicked the MessageBack button", "p-click", value=gone, replyToId="1:card")
    assert (await post(client, personal))[0] == 200
    [error] = cards(fake)
    assert "999" in texts(error)
    assert fake.calls[0].method == "POST"  # a new message: the card the click came from stays as it was


# ---------------------------------------------------------------- Universal Actions refresh


def _invoke(url: str, verb: str, data: dict[str, Any], trigger: str, activity_id: str) -> dict[str, Any]:
    body = card_action(url, verb, data, activity_id)
    body["value"]["trigger"] = trigger  # as the Universal Action Model's request format publishes it
    return body


async def test_refresh_with_a_verb_kebiao_no_longer_knows_leaves_the_card(kebiao: Any) -> None:
    client, fake, url = kebiao
    status, body = await post(client, _invoke(url, "approval.refresh", {"id": 7}, "automatic", "r-1"))
    assert status == 200
    assert body["statusCode"] == 400 and body["type"] == ERROR  # no card: the client keeps the one it shows
    assert "approval.refresh" in body["value"]["message"] and "left as it is" in body["value"]["message"]
    assert fake.calls == []


async def test_refresh_that_cannot_be_served_leaves_the_card_but_a_click_is_told(kebiao: Any) -> None:
    client, _fake, url = kebiao
    gone = {"suggestion_id": 999}
    status, body = await post(client, _invoke(url, "suggestion.accept", gone, "automatic", "r-2"))
    assert status == 200 and body["statusCode"] == 400 and body["type"] == ERROR
    status, body = await post(client, _invoke(url, "approval.refresh", {"id": 7}, "manual", "r-3"))
    assert status == 200 and body["statusCode"] == 200 and body["type"] == CARD
    assert "approval.refresh" in texts(body["value"])  # the clicker sees which action is unknown


async def test_refresh_kebiao_can_serve_returns_the_card(kebiao: Any) -> None:
    client, _fake, url = kebiao
    status, body = await post(client, _invoke(url, "customer.show", {"customer_id": 1}, "automatic", "r-4"))
    assert status == 200 and body["statusCode"] == 200 and body["type"] == CARD
    assert "ABC公司" in texts(body["value"])


async def test_card_action_that_is_not_action_execute_gets_the_documented_error_object(kebiao: Any) -> None:
    client, _fake, url = kebiao
    body = card_action(url, "suggestion.accept", {"suggestion_id": 1}, "s-1")
    body["value"]["action"]["type"] = "Action.Submit"
    status, answer = await post(client, body)
    assert status == 200 and answer["statusCode"] == 400 and answer["type"] == ERROR
    assert "Action.Execute" in answer["value"]["message"]
    body = dict(body, id="s-2", value={"trigger": "manual"})
    status, answer = await post(client, body)
    assert status == 200 and answer["statusCode"] == 400 and "value.action" in answer["value"]["message"]


# ---------------------------------------------------------------- message-extension command ids


@pytest.mark.parametrize(
    "name",
    [
        "compose_extension_fetch_task_group_chat",
        "compose_extension_fetch_task_message_action_in_thread",
        "compose_extension_fetch_task_full",
    ],
)
async def test_fetch_task_for_another_command_gets_a_message_not_the_tag_form(kebiao: Any, name: str) -> None:
    client, fake, url = kebiao
    body = load_published(name, url)
    status, answer = await post(client, body)
    assert status == 200
    assert answer["task"]["type"] == "message"
    assert body["value"]["commandId"] in answer["task"]["value"] and "card" not in answer["task"]
    assert fake.calls == []


async def test_submit_action_for_another_command_applies_nothing(kebiao: Any) -> None:
    client, _fake, url = kebiao
    published = load_published("compose_extension_submit_action_give_kudos_shortened", url)
    submit = load_payload("compose_extension_submit_action", url)
    submit["value"] = copy.deepcopy(published["value"])  # giveKudos with the published form data
    submit["value"]["data"].update(customer="1", tags="VIP客户")
    status, answer = await post(client, submit)
    assert status == 200 and answer["task"]["type"] == "message" and "giveKudos" in answer["task"]["value"]
    async with client.app[DATABASE].unit_of_work() as uow:
        assert await uow.assignments.active_for(1) == []


async def test_query_for_another_command_gets_a_message(kebiao: Any) -> None:
    client, _fake, url = kebiao
    body = load_published("compose_extension_query_search_cmd", url)
    status, answer = await post(client, body)
    assert status == 200
    assert answer["composeExtension"]["type"] == "message"
    assert "searchCmd" in answer["composeExtension"]["text"]
