"""Meeting prep through POST /api/messages: the meetingStart event and the prep / 会前 commands."""

from __future__ import annotations

from typing import Any

import pytest

from tests.teams.conftest import load_payload
from tests.teams.test_bot_flow import cards, kebiao, message, post, texts

__all__ = ["kebiao"]

PREP = "会前准备"


def meeting_start(url: str, activity_id: str, **changes: Any) -> dict[str, Any]:
    body = load_payload("meeting_start", url)
    body["id"] = activity_id
    body.update(changes)
    return body


async def test_meeting_titled_with_a_customer_gets_the_prep_card(kebiao: Any) -> None:
    client, fake, url = kebiao
    status, _ = await post(client, message(url, "tag ABC公司 +VIP客户", "m-0"))
    assert status == 200
    status, _ = await post(client, meeting_start(url, "ms-1"))
    assert status == 200
    prep = cards(fake)[-1]
    content = texts(prep)
    assert PREP in content and "ABC公司" in content and "VIP客户" in content
    assert fake.delivered[-1].conversation_id.startswith("19:meeting_")


async def test_a_linked_meeting_chat_gets_its_customer_whatever_the_title(kebiao: Any) -> None:
    client, fake, url = kebiao
    chat = load_payload("meeting_start", url)["conversation"]
    linking = message(url, "<at>客标</at> link 华为深圳", "ml-1", conversation=chat)
    linking["entities"] = [
        {"type": "mention", "mentioned": {"id": linking["recipient"]["id"], "name": "客标"}, "text": "<at>客标</at>"}
    ]
    assert (await post(client, linking))[0] == 200
    body = meeting_start(url, "ms-2")
    body["value"]["Title"] = "周会"
    await post(client, body)
    content = texts(cards(fake)[-1])
    assert PREP in content and "华为深圳" in content


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda b: b["value"].update(Title="周会：没有客户"), id="title-names-no-customer"),
        pytest.param(lambda b: b["value"].update(Title="华为上海 / 华为深圳 对齐"), id="title-names-two"),
        pytest.param(lambda b: b["value"].update(Title="华为"), id="title-only-a-prefix"),
        pytest.param(lambda b: b["value"].pop("Title"), id="no-title"),
        pytest.param(lambda b: b["value"].update(Title=12345), id="title-not-text"),
        pytest.param(lambda b: b.pop("value"), id="no-value"),
        pytest.param(lambda b: b.update(value="ABC公司"), id="value-not-an-object"),
        pytest.param(lambda b: b.update(value=None), id="value-null"),
        pytest.param(lambda b: b["value"].update(Title="ABC公司" * 200), id="title-very-long"),
        pytest.param(lambda b: b.pop("from"), id="no-from"),
    ],
)
async def test_meeting_events_about_no_single_customer_post_nothing(kebiao: Any, change: Any) -> None:
    client, fake, url = kebiao
    body = meeting_start(url, "ms-bad")
    change(body)
    status, _ = await post(client, body)
    assert status in (200, 400)  # never a 5xx
    assert cards(fake) == []


async def test_meeting_event_without_a_conversation_is_refused_or_ignored_never_500(kebiao: Any) -> None:
    client, fake, url = kebiao
    body = meeting_start(url, "ms-noconv")
    body.pop("conversation")
    status, _ = await post(client, body)
    assert status in (200, 400) and cards(fake) == []


async def test_meeting_end_and_other_meeting_events_post_nothing(kebiao: Any) -> None:
    client, fake, url = kebiao
    for name in ("application/vnd.microsoft.meetingEnd", "application/vnd.microsoft.meetingParticipantJoin"):
        status, _ = await post(client, meeting_start(url, f"me-{name[-5:]}", name=name))
        assert status == 200
    assert cards(fake) == []


@pytest.mark.parametrize("command", ["prep ABC公司", "会前 ABC公司", "会前ABC公司"])
async def test_prep_command_shows_the_card_with_my_personal_tags(kebiao: Any, command: str) -> None:
    client, fake, url = kebiao
    await post(client, message(url, "mytag ABC公司 +周三拜访", "p-0"))
    await post(client, message(url, command, "p-1"))
    content = texts(cards(fake)[-1])
    assert PREP in content and "ABC公司" in content and "周三拜访" in content


async def test_prep_without_a_customer_needs_a_link(kebiao: Any) -> None:
    client, fake, url = kebiao
    await post(client, message(url, "prep", "q-1"))
    assert "缺少客户；用法：会前" in texts(cards(fake)[-1])
    await post(client, message(url, "link ABC公司", "q-2"))
    await post(client, message(url, "会前", "q-3"))
    content = texts(cards(fake)[-1])
    assert PREP in content and "ABC公司" in content
