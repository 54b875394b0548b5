"""The Kebiao bot behind the real create_app (SQLite, built-in taxonomy) against the fake Bot Connector."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import DATABASE, create_app
from config import Settings
from core.records import CustomerDraft
from core.tags.users import set_role
from core.types import Role
from tests.teams.conftest import load_payload
from tests.teams.fake_connector import FakeConnector

AGENT = "6c1b5c2e-1f0a-4c55-9d55-3a5c2f1e0a11"  # 王丽 in the recorded payloads
MANAGER = "9f8e7d6c-0000-4000-8000-00000000a001"


@pytest.fixture
async def kebiao(
    aiohttp_client: Any, tmp_path: Path, connector: tuple[FakeConnector, str]
) -> AsyncIterator[tuple[TestClient, FakeConnector, str]]:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'kebiao.db'}", scheduler_enabled=False)
    client: TestClient = await aiohttp_client(create_app(settings))
    async with client.app[DATABASE].unit_of_work() as uow:
        now = datetime.now(UTC)
        await uow.customers.add(CustomerDraft(name="ABC公司", company="ABC贸易", region="华东"), now)
        await uow.customers.add(CustomerDraft(name="华为上海", region="华东"), now)
        await uow.customers.add(CustomerDraft(name="华为深圳", region="华南"), now)
        await set_role(uow, MANAGER, Role.MANAGER, (), now, display_name="张经理")
    fake, url = connector
    yield client, fake, url


async def post(client: TestClient, body: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post("/api/messages", json=body)
    raw = await response.text()
    return response.status, (json.loads(raw) if raw else None)


def message(url: str, text: str, activity_id: str, **changes: Any) -> dict[str, Any]:
    body = load_payload("personal_message", url)
    body.update(text=text, id=activity_id, **changes)
    return body


def cards(fake: FakeConnector) -> list[dict[str, Any]]:
    """Adaptive Cards the bot sent, in order."""
    out = []
    for call in fake.delivered:
        for attachment in call.body.get("attachments") or []:
            out.append(attachment["content"])
    return out


def texts(node: Any) -> str:
    """Every TextBlock text, RichTextBlock (its runs joined) and action title in a card, joined."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") == "TextBlock":
                found.append(value["text"])
            if value.get("type") == "RichTextBlock":
                found.append("".join(r["text"] if isinstance(r, dict) else r for r in value["inlines"]))
            if value.get("title") and str(value.get("type", "")).startswith("Action."):
                found.append(value["title"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(node)
    return "\n".join(found)


def actions(node: Any, verb: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") == "Action.Execute" and value.get("verb") == verb:
                found.append(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(node)
    return found


def card_action(url: str, verb: str, data: dict[str, Any], activity_id: str, **changes: Any) -> dict[str, Any]:
    body = load_payload("adaptive_card_action", url)
    body["id"] = activity_id
    body["value"]["action"].update(verb=verb, data=data)
    body.update(changes)
    return body


async def link_channel(client: TestClient, url: str) -> dict[str, Any]:
    body = load_payload("channel_message_mention", url)
    body.update(text="<at>客标</at> 绑定 ABC公司", id="link-1")
    assert (await post(client, body))[0] == 200
    return body


async def test_tag_command_in_personal_chat_replies_with_the_customer_card(kebiao: Any) -> None:
    client, fake, url = kebiao
    status, _ = await post(client, message(url, "tag ABC公司 +VIP客户", "m-1"))
    assert status == 200
    [reply] = cards(fake)
    content = texts(reply)
    assert "ABC公司" in content and "VIP客户" in content and "已添加：VIP客户" in content
    assert fake.delivered[0].conversation_id == "a:1Qy8XcPersonalWangLi"


async def test_unknown_text_gets_the_help_card_never_silence(kebiao: Any) -> None:
    client, fake, url = kebiao
    await post(client, message(url, "你好，在吗", "m-2"))
    [reply] = cards(fake)
    assert "没有听懂" in texts(reply) and "帮助" in texts(reply)


async def test_ambiguous_customer_gets_a_choice_card_and_choosing_runs_the_command(kebiao: Any) -> None:
    client, fake, url = kebiao
    await post(client, message(url, "打标签 华为 +VIP客户", "m-3"))
    [choice] = cards(fake)
    buttons = actions(choice, "customer.choose")
    assert [b["title"] for b in buttons] == ["选择", "选择"]  # one short button per row: never truncated
    shown = texts(choice)
    assert "华为上海" in shown and "华为深圳" in shown and "华东" in shown and "华南" in shown
    status, body = await post(client, card_action(url, "customer.choose", buttons[1]["data"], "c-1"))
    assert status == 200 and body["statusCode"] == 200
    refreshed = texts(body["value"])
    assert "华为深圳" in refreshed and "已添加：VIP客户" in refreshed


async def test_unknown_tag_is_refused_and_changes_nothing(kebiao: Any) -> None:
    client, fake, url = kebiao
    await post(client, message(url, "tag ABC公司 +VIP客户 +不存在的标签", "m-4"))
    await post(client, message(url, "查看 ABC公司", "m-5"))
    error, summary = cards(fake)
    assert "没有名为「不存在的标签」的标签" in texts(error) and "没有做任何修改" in texts(error)
    assert "VIP客户" not in texts(summary)


async def test_linked_channel_message_gets_a_suggestion_card_and_accept_replaces_it(kebiao: Any) -> None:
    client, fake, url = kebiao
    link = await link_channel(client, url)
    assert "本会话已绑定到 ABC公司" in texts(cards(fake)[0])
    body = dict(link, text="<at>客标</at> 麻烦发一下报价单", id="msg-quote")
    assert (await post(client, body))[0] == 200
    suggestion = cards(fake)[1]
    assert "询价客户" in texts(suggestion)
    [accept] = actions(suggestion, "suggestion.accept")
    assert actions(suggestion, "suggestion.reject")
    status, answer = await post(client, card_action(url, "suggestion.accept", accept["data"], "click-1"))
    assert status == 200 and answer["type"] == "application/vnd.microsoft.card.adaptive"
    refreshed = texts(answer["value"])
    assert "已接受 · 王丽" in refreshed and not actions(answer["value"], "suggestion.accept")
    # A second click (another person, later) sees the first decision and changes nothing.
    again = card_action(url, "suggestion.reject", accept["data"], "click-2")
    status, answer = await post(client, again)
    assert "已接受 · 王丽" in texts(answer["value"])
    await post(client, message(url, "tags ABC公司", "m-6"))
    assert "询价客户" in texts(cards(fake)[-1])


async def test_retried_delivery_posted_twice_concurrently_yields_one_card(kebiao: Any) -> None:
    client, fake, url = kebiao
    link = await link_channel(client, url)
    body = dict(link, text="<at>客标</at> 麻烦发一下报价单", id="msg-retry")
    results = await asyncio.gather(post(client, body), post(client, body))
    assert [status for status, _ in results] == [200, 200]
    suggestion_cards = [c for c in cards(fake) if actions(c, "suggestion.accept")]
    assert len(suggestion_cards) == 1
    async with client.app[DATABASE].unit_of_work() as uow:
        rows = [r for r in await uow.suggestions.pending_for(1) if r.tag == "询价客户"]
    assert len(rows) == 1


async def test_sensitive_auto_tags_are_never_shown_to_a_shared_conversation(kebiao: Any) -> None:
    client, fake, url = kebiao
    link = await link_channel(client, url)
    before = len(fake.delivered)
    await post(client, dict(link, text="<at>客标</at> 客户投诉发货太慢，要求加急处理", id="msg-risk"))
    assert len(fake.delivered) == before  # applied (risk is managers-only) but no card, no hint
    async with client.app[DATABASE].unit_of_work() as uow:
        held = {a.tag for a in await uow.assignments.active_for(1)}
    assert "紧急工单" in held


async def test_manager_in_linked_personal_chat_sees_auto_applied_card_and_can_undo(kebiao: Any) -> None:
    client, fake, url = kebiao
    who = {"id": "29:manager", "name": "张经理", "aadObjectId": MANAGER}
    await post(client, message(url, "link ABC公司", "p-1", **{"from": who}))
    await post(client, message(url, "我要退款", "p-2", **{"from": who}))
    applied = cards(fake)[-1]
    assert "售后工单" in texts(applied)
    [undo] = actions(applied, "assignment.undo")
    assert undo["data"]["customer_id"] == 1
    click = card_action(url, "assignment.undo", undo["data"], "u-1", **{"from": who})
    status, answer = await post(client, click)
    assert status == 200 and "已撤销 · 张经理" in texts(answer["value"])
    async with client.app[DATABASE].unit_of_work() as uow:
        assert "售后工单" not in {a.tag for a in await uow.assignments.active_for(1)}


async def test_messages_from_the_bot_itself_are_ignored(kebiao: Any) -> None:
    client, fake, url = kebiao
    bot = {"id": "28:00000000-0000-0000-0000-00000000b07a", "name": "客标"}
    await post(client, message(url, "help", "b-1", **{"from": bot}))
    assert fake.delivered == []


async def test_message_extension_search_by_name_and_by_tags(kebiao: Any) -> None:
    client, _fake, url = kebiao
    await post(client, message(url, "tag ABC公司 +VIP客户", "m-7"))
    query = load_payload("compose_extension_query", url)
    status, body = await post(client, query)
    assert status == 200
    result = body["composeExtension"]
    assert result["type"] == "result"
    assert result["attachments"][0]["preview"]["content"]["title"] == "ABC公司"
    query["value"]["parameters"] = [{"name": "query", "value": "VIP客户 AND NOT 沉默客户"}]
    query["id"] = "q-2"
    status, body = await post(client, query)
    assert [a["preview"]["content"]["title"] for a in body["composeExtension"]["attachments"]] == ["ABC公司"]
    manager = {"id": "29:manager", "name": "张经理", "aadObjectId": MANAGER}
    await post(client, message(url, "tag ABC公司 +高危流失", "m-8", **{"from": manager}))
    query["value"]["parameters"] = [{"name": "query", "value": "高危流失"}]  # managers-only: unknown to agents
    query["id"] = "q-3"
    status, body = await post(client, query)
    assert body["composeExtension"] == {"type": "message", "text": "没有找到与“高危流失”匹配的客户"}
    query["value"]["parameters"] = [{"name": "query", "value": "ABC"}]
    query["id"] = "q-4"
    status, body = await post(client, query)
    assert "高危" not in json.dumps(body["composeExtension"]["attachments"], ensure_ascii=False)


async def test_message_action_form_prefills_suggestions_and_submit_applies_them(kebiao: Any) -> None:
    client, _fake, url = kebiao
    fetch = load_payload("compose_extension_fetch_task", url)
    fetch["value"]["messagePayload"]["body"]["content"] = "<p>麻烦发一下报价单</p>"
    status, body = await post(client, fetch)
    assert status == 200
    form = body["task"]["value"]["card"]["content"]
    inputs = {i["id"]: i for i in form["body"] if i["type"] == "Input.ChoiceSet"}
    assert inputs["tags"]["value"] == "询价客户"
    assert {"title": "ABC公司（ABC贸易 · 华东）", "value": "1"} in inputs["customer"]["choices"]
    assert all(c["value"] != "高危流失" for c in inputs["tags"]["choices"])  # agent: no sensitive tags
    submit = load_payload("compose_extension_submit_action", url)
    submit["value"]["data"] = {"customer": "1", "tags": "询价客户,VIP客户"}
    status, body = await post(client, submit)
    assert status == 200
    card = body["composeExtension"]["attachments"][0]["content"]
    assert "询价客户" in texts(card) and "VIP客户" in texts(card)


async def test_conversation_update_stores_the_reference_with_tenant(kebiao: Any) -> None:
    client, _fake, url = kebiao
    body = load_payload("conversation_update_personal_install", url)
    assert (await post(client, body))[0] == 200
    from storage.channels import SqlChannelStore

    store = SqlChannelStore(client.app[DATABASE].engine)
    saved = await store.reference("teams", f"conversation:{body['conversation']['id']}")
    assert saved is not None and saved.tenant_id == "72f988bf-86f1-41af-91ab-2d7cd011db47"
