"""Sending through Kebiao's turn context addresses a copy: the caller's activity and card stay as they were."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.schema import Activity

from bots.teams.turn import ShallowCopyTurnContext, conversation_reference, shallow_copy
from tests.teams.conftest import Client, load_payload
from tests.teams.fake_connector import FakeConnector

Connector = tuple[FakeConnector, str]
CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "ABC公司"}]}


class SendsOneActivityTwice(TeamsActivityHandler):
    """Sends the same activity object twice, the second time through a send handler that re-addresses it."""

    def __init__(self) -> None:
        self.kept: Activity = MessageFactory.attachment(CardFactory.adaptive_card(copy.deepcopy(CARD)))
        self.kept.id = "caller-id"
        self.before: dict[str, Any] = self.kept.serialize()
        self.seen: list[tuple[type, dict[str, Any]]] = []

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        self.seen.append((type(turn_context), self.kept.serialize()))
        await turn_context.send_activity(self.kept)
        self.seen.append((type(turn_context), self.kept.serialize()))

        async def as_new_message(context: TurnContext, activities: list[Activity], next_send: Any) -> Any:
            for activity in activities:
                activity.reply_to_id = None
            return await next_send()

        turn_context.on_send_activities(as_new_message)
        await turn_context.send_activity(self.kept)
        self.seen.append((type(turn_context), self.kept.serialize()))


async def test_sends_leave_the_callers_activity_as_it_was(make_client: Client, connector: Connector) -> None:
    fake, url = connector
    bot = SendsOneActivityTwice()
    client = await make_client(bot)
    payload = load_payload("personal_message", url)
    assert (await client.post("/api/messages", json=payload)).status == 200
    assert [kind for kind, _ in bot.seen] == [ShallowCopyTurnContext] * 3
    assert all(state == bot.before for _, state in bot.seen)  # no id, address or replyToId written into it
    assert bot.kept.attachments[0].content == CARD
    reply, new = fake.delivered
    assert reply.reply_to_id == payload["id"] and reply.body["replyToId"] == payload["id"]
    assert new.reply_to_id == "" and "replyToId" not in new.body
    for call in (reply, new):
        assert call.body["attachments"][0]["content"] == CARD
        assert call.body["conversation"]["id"] == payload["conversation"]["id"]
        assert call.body["recipient"]["id"] == payload["from"]["id"] and "id" not in call.body
    assert json.dumps(reply.body["attachments"]) == json.dumps(new.body["attachments"])


PAYLOADS = sorted(p.stem for p in (Path(__file__).parent.parent / "payloads" / "teams").glob("*.json"))


@pytest.mark.parametrize("name", PAYLOADS)
def test_a_shallow_copy_is_what_copy_copy_makes(name: str) -> None:
    activity = Activity().deserialize(load_payload(name, "http://127.0.0.1:1/"))
    for model in (activity, activity.from_property, activity.recipient, activity.conversation):
        ours, theirs = shallow_copy(model), copy.copy(model)
        assert type(ours) is type(theirs) and ours is not model
        assert ours.__dict__ == theirs.__dict__ and all(ours.__dict__[k] is v for k, v in model.__dict__.items())


@pytest.mark.parametrize("name", PAYLOADS)
def test_the_reply_address_is_the_sdks_conversation_reference(name: str) -> None:
    activity = Activity().deserialize(load_payload(name, "http://127.0.0.1:1/"))
    ours, theirs = conversation_reference(activity), TurnContext.get_conversation_reference(activity)
    assert ours.serialize() == theirs.serialize()
    assert ours.user is not activity.from_property and ours.conversation is not activity.conversation


class Slotted:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


class CopiesItself:
    def __init__(self) -> None:
        self.copied = False

    def __copy__(self) -> CopiesItself:
        clone = CopiesItself()
        clone.copied = True
        return clone


def test_a_class_that_customises_copying_is_copied_by_copy_copy() -> None:
    assert shallow_copy(CopiesItself()).copied
    slotted = shallow_copy(Slotted(3))
    assert type(slotted) is Slotted and slotted.value == 3
    assert shallow_copy(None) is None and shallow_copy("text") == "text"
    assert shallow_copy({"a": [1]}) == {"a": [1]}
