"""Personal tags through POST /api/messages: the author's private notes on a customer card, nobody else's."""

from __future__ import annotations

from typing import Any

from app import DATABASE
from core.tags.personal import PERSONAL_CAP
from storage import tables as t
from tests.teams.conftest import load_payload
from tests.teams.test_bot_flow import cards, kebiao, message, post, texts

__all__ = ["kebiao"]  # the fixture, shared with the bot-flow tests

OTHER_AGENT = {"id": "29:1OtherAgent", "name": "李强", "aadObjectId": "11111111-2222-4333-8444-555555555555"}
PERSONAL_TITLE = "我的标签（仅自己可见）"


async def test_mytag_adds_and_shows_only_to_the_author(kebiao: Any) -> None:
    client, fake, url = kebiao
    status, _ = await post(client, message(url, "mytag ABC公司 +周三拜访 +性格急躁", "p-1"))
    assert status == 200
    [reply] = cards(fake)
    content = texts(reply)
    assert PERSONAL_TITLE in content and "周三拜访" in content and "性格急躁" in content
    assert "已添加个人标签：周三拜访、性格急躁" in content
    # The author's ordinary summary card shows them too…
    await post(client, message(url, "查看 ABC公司", "p-2"))
    assert "周三拜访" in texts(cards(fake)[-1])
    # …another agent's does not, and their own (empty) section invites them to add one.
    other = message(url, "查看 ABC公司", "p-3", conversation={"conversationType": "personal", "id": "a:other"})
    other["from"] = OTHER_AGENT
    await post(client, other)
    theirs = texts(cards(fake)[-1])
    assert "周三拜访" not in theirs and "性格急躁" not in theirs and "还没有个人标签" in theirs
    # They are not enterprise tags: no assignment, no tag event.
    async with client.app[DATABASE].engine.connect() as conn:
        assert (await conn.execute(t.tag_assignments.select())).first() is None
        assert (await conn.execute(t.tag_events.select())).first() is None


async def test_mytag_removes_and_lists(kebiao: Any) -> None:
    client, fake, url = kebiao
    await post(client, message(url, "我的标签 ABC公司 +周三拜访 +性格急躁", "r-1"))
    await post(client, message(url, "我的标签 ABC公司 -性格急躁 -没有这个", "r-2"))
    content = texts(cards(fake)[-1])
    assert "已移除个人标签：性格急躁" in content and "本来就没有：没有这个" in content
    await post(client, message(url, "我的标签 ABC公司", "r-3"))
    listed = texts(cards(fake)[-1])
    assert "周三拜访" in listed and "性格急躁" not in listed and "已添加" not in listed


async def test_personal_data_and_the_cap_are_refused_and_change_nothing(kebiao: Any) -> None:
    client, fake, url = kebiao
    await post(client, message(url, "mytag ABC公司 +周三拜访 +手机13800138000", "x-1"))
    refused = texts(cards(fake)[-1])
    assert "身份证号、手机号或银行卡号" in refused and "13800138000" not in refused
    many = " ".join(f"+备注{i}" for i in range(PERSONAL_CAP + 1))
    await post(client, message(url, f"mytag ABC公司 {many}", "x-2"))
    assert f"最多 {PERSONAL_CAP} 个个人标签" in texts(cards(fake)[-1])
    async with client.app[DATABASE].engine.connect() as conn:
        assert (await conn.execute(t.personal_tags.select())).first() is None


async def test_mytag_in_a_channel_is_refused_and_channel_cards_never_show_personal_tags(kebiao: Any) -> None:
    client, fake, url = kebiao
    await post(client, message(url, "mytag ABC公司 +周三拜访", "c-1"))
    channel = load_payload("channel_message_mention", url)
    channel.update(text="<at>客标</at> mytag ABC公司 +性格急躁", id="c-2")
    assert (await post(client, channel))[0] == 200
    refused = texts(cards(fake)[-1])
    assert "私聊" in refused and "性格急躁" not in refused
    channel.update(text="<at>客标</at> 查看 ABC公司", id="c-3")
    await post(client, channel)
    shown = texts(cards(fake)[-1])
    assert "ABC公司" in shown and "周三拜访" not in shown and PERSONAL_TITLE not in shown


async def test_mytag_without_plus_explains_the_grammar(kebiao: Any) -> None:
    client, fake, url = kebiao
    status, _ = await post(client, message(url, "mytag ABC公司 周三拜访", "g-1"))
    assert status == 200
    assert "+周三拜访" in texts(cards(fake)[-1])
