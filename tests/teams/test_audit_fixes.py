"""Issue 3 (Teams audit): alert card actions, error cards, manager-safe message extension, customer picker.

Everything runs through the real create_app and POST /api/messages with the fake Bot Connector.
"""
# ruff: noqa: F811  (every test takes the imported `kebiao` fixture)

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient

from app import DATABASE, TAXONOMY
from cards.alert import build_alert_card
from cards.present import alert_view_from_payload
from core.alerts.ports import NewOutboxMessage
from core.alerts.selection import AlertNotice, Reason
from core.records import CustomerDraft
from storage.outbox import SqlAlertStore
from tagging.taxonomy import Visibility
from tests.teams.conftest import load_payload
from tests.teams.test_bot_flow import (  # noqa: F401  (kebiao is a fixture)
    MANAGER,
    actions,
    card_action,
    cards,
    kebiao,
    link_channel,
    message,
    post,
    texts,
)

CARD = "application/vnd.microsoft.card.adaptive"
BOSS = {"id": "29:manager", "name": "张经理", "aadObjectId": MANAGER}
PERSONAL = {"conversationType": "personal", "isGroup": False, "id": "a:1Qy8XcPersonalZhang"}


async def _alert_card(client: TestClient, recipient: str) -> dict[str, Any]:
    """Queue a churn alert for `recipient` (as the churn job does) and build the card Teams delivers."""
    async with client.app[DATABASE].unit_of_work() as uow:
        [customer] = await uow.customers.find_exact("ABC公司")
    now = datetime.now(UTC)
    notice = AlertNotice(
        rule="churn",
        title="高危流失预警",
        customer_id=customer.id,
        customer_name=customer.name,
        reasons=(Reason("no_contact", 0.6, "30 天没有沟通"),),
        raised_at=now,
        alert_key=f"churn|{customer.id}|{recipient}",
        snooze_key=f"churn|{customer.id}",
    )
    store = SqlAlertStore(client.app[DATABASE].engine)
    async with store.unit_of_work() as uow:
        await uow.outbox.enqueue(NewOutboxMessage(notice.alert_key, recipient, "teams", notice.to_payload()), now)
        [row] = await uow.outbox.claim(now, 10)
    return build_alert_card(alert_view_from_payload(row), now)


async def test_alert_card_acknowledge_snooze_and_show_customer_for_the_recipient(kebiao: Any) -> None:
    client, _fake, url = kebiao
    await post(client, message(url, "tag ABC公司 +高危流失", "t-1", **{"from": BOSS}))
    alert = await _alert_card(client, MANAGER)
    [ack] = actions(alert, "alert.ack")
    [snooze] = actions(alert, "alert.snooze")
    [show] = actions(alert, "customer.show")

    status, body = await post(client, card_action(url, "alert.snooze", snooze["data"], "a-1", **{"from": BOSS}))
    assert status == 200 and body["type"] == CARD
    assert "暂停提醒至" in texts(body["value"]) and actions(body["value"], "alert.ack")

    status, body = await post(client, card_action(url, "alert.ack", ack["data"], "a-2", **{"from": BOSS}))
    assert status == 200 and body["type"] == CARD
    refreshed = body["value"]
    assert "已确认 · 张经理" in texts(refreshed) and "ABC公司" in texts(refreshed)
    assert not actions(refreshed, "alert.ack") and actions(refreshed, "customer.show")
    async with client.app[DATABASE].engine.connect() as conn:
        from sqlalchemy import select

        from storage import tables as t

        k = t.alert_acknowledgements.c
        rows = (await conn.execute(select(k.user_id, k.action))).all()
    assert sorted((r.user_id, r.action) for r in rows) == [(MANAGER, "ack"), (MANAGER, "snooze")]

    status, body = await post(client, card_action(url, "customer.show", show["data"], "a-3", **{"from": BOSS}))
    assert status == 200 and body["type"] == CARD
    assert "ABC公司" in texts(body["value"]) and "高危流失" in texts(body["value"])  # the manager's own 1:1


async def test_alert_actions_of_someone_else_or_unknown_get_an_error_card(kebiao: Any) -> None:
    client, _fake, url = kebiao
    alert = await _alert_card(client, MANAGER)
    [ack] = actions(alert, "alert.ack")
    status, body = await post(client, card_action(url, "alert.ack", ack["data"], "x-1"))  # 王丽, not the recipient
    assert status == 200 and body["type"] == CARD
    assert "出错了" in texts(body["value"]) and "只有收到提醒的人" in texts(body["value"])
    gone = {"alert_id": ack["data"]["alert_id"] + 500}
    status, body = await post(client, card_action(url, "alert.ack", gone, "x-2", **{"from": BOSS}))
    # the detail exists only in English, so the whole card is English (one language per card)
    assert status == 200 and body["type"] == CARD and "Something went wrong" in texts(body["value"])
    async with client.app[DATABASE].engine.connect() as conn:
        from sqlalchemy import func, select

        from storage import tables as t

        assert (await conn.execute(select(func.count()).select_from(t.alert_acknowledgements))).scalar() == 0


async def test_a_failed_card_action_answers_200_with_an_error_card(kebiao: Any) -> None:
    client, _fake, url = kebiao
    status, body = await post(client, card_action(url, "suggestion.accept", {"suggestion_id": 99999}, "e-1"))
    assert status == 200 and body["statusCode"] == 200 and body["type"] == CARD
    assert body["value"]["type"] == "AdaptiveCard" and "Something went wrong" in texts(body["value"])
    assert "99999" in texts(body["value"])


# ---------------------------------------------------------------- message extension as a manager


def _sensitive_tags(client: TestClient) -> set[str]:
    taxonomy = client.app[TAXONOMY].taxonomy
    assert taxonomy is not None
    return {t.name for d in taxonomy.dimensions if d.visibility is Visibility.MANAGERS for t in d.iter_tags()}


async def test_message_extension_search_as_a_manager_never_shows_managers_only_tags(kebiao: Any) -> None:
    client, _fake, url = kebiao
    await post(client, message(url, "tag ABC公司 +高危流失 +VIP客户", "s-1", **{"from": BOSS}))
    hidden = _sensitive_tags(client)
    assert "高危流失" in hidden
    for n, conversation in enumerate((None, PERSONAL)):  # a channel, and a 1:1 chat between people
        query = load_payload("compose_extension_query", url)
        query.update({"id": f"q-{n}", "from": BOSS})
        if conversation is not None:
            query["conversation"] = conversation
        query["value"]["parameters"] = [{"name": "query", "value": "ABC"}]
        status, body = await post(client, query)
        assert status == 200
        [hit] = body["composeExtension"]["attachments"]
        shown = json.dumps(hit, ensure_ascii=False)
        assert "VIP客户" in shown and not [name for name in hidden if name in shown]
        query.update(id=f"q-risk-{n}")
        query["value"]["parameters"] = [{"name": "query", "value": "高危流失"}]
        status, body = await post(client, query)
        assert body["composeExtension"]["type"] == "message"  # a managers-only tag finds nothing here


async def test_tag_form_and_submit_as_a_manager_never_show_managers_only_tags(kebiao: Any) -> None:
    client, _fake, url = kebiao
    await post(client, message(url, "tag ABC公司 +高危流失", "f-0", **{"from": BOSS}))
    hidden = _sensitive_tags(client)
    for n, conversation in enumerate((None, PERSONAL)):
        fetch = load_payload("compose_extension_fetch_task", url)
        fetch.update({"id": f"f-{n}", "from": BOSS})
        if conversation is not None:
            fetch["conversation"] = conversation
        fetch["value"]["messagePayload"]["body"]["content"] = "<p>客户投诉要退款，麻烦发报价单</p>"
        status, body = await post(client, fetch)
        assert status == 200
        form = json.dumps(body["task"]["value"]["card"], ensure_ascii=False)
        assert "询价客户" in form and not [name for name in hidden if name in form]
        submit = load_payload("compose_extension_submit_action", url)
        submit.update({"id": f"sub-{n}", "from": BOSS})
        if conversation is not None:
            submit["conversation"] = conversation
        submit["value"]["data"] = {"customer": "1", "tags": "询价客户"}
        status, body = await post(client, submit)
        card = json.dumps(body["composeExtension"]["attachments"][0]["content"], ensure_ascii=False)
        assert "询价客户" in card and not [name for name in hidden if name in card]


# ---------------------------------------------------------------- customer picker


def _search(url: str, text: str, activity_id: str, skip: int = 0, top: int = 15) -> dict[str, Any]:
    body = load_payload("compose_extension_fetch_task", url)
    body.update(id=activity_id, name="application/search")
    body["value"] = {"queryText": text, "queryOptions": {"skip": skip, "top": top}, "dataset": "kebiao.customers"}
    return body


async def test_customer_picker_pages_by_typeahead_and_submits_the_chosen_id(kebiao: Any) -> None:
    client, _fake, url = kebiao
    now = datetime.now(UTC)
    async with client.app[DATABASE].unit_of_work() as uow:
        for i in range(60):
            await uow.customers.add(CustomerDraft(name=f"宁波客户{i:02d}", region="华东"), now)
        twin = await uow.customers.add(CustomerDraft(name="华为上海", region="华北", crm_id="CRM-0099"), now)
    fetch = load_payload("compose_extension_fetch_task", url)
    fetch["value"]["messagePayload"]["body"]["content"] = "<p>麻烦发一下报价单</p>"
    status, body = await post(client, fetch)
    picker = next(i for i in body["task"]["value"]["card"]["content"]["body"] if i.get("id") == "customer")
    assert len(picker["choices"]) == 50  # the static first page …
    assert picker["choices.data"] == {"type": "Data.Query", "dataset": "kebiao.customers"}  # … then typeahead
    assert all(c["value"].isdigit() for c in picker["choices"])

    status, body = await post(client, _search(url, "宁波客户5", "ta-1"))
    assert status == 200 and body["type"] == "application/vnd.microsoft.search.searchResponse"
    results = body["value"]["results"]
    assert [r["title"] for r in results] == [f"宁波客户5{i}（华东）" for i in range(10)]
    late = next(r for r in results if r["title"].startswith("宁波客户59"))
    status, body = await post(client, _search(url, "华为上海", "ta-2"))
    titles = sorted(r["title"] for r in body["value"]["results"])
    assert titles == ["华为上海（华东）", "华为上海（华北 · CRM-0099）"]  # same name, told apart
    assert str(twin.id) in {r["value"] for r in body["value"]["results"]}
    status, body = await post(client, _search(url, "宁波客户", "ta-3", skip=55, top=15))
    assert [r["title"][:6] for r in body["value"]["results"]] == [f"宁波客户{i}" for i in range(55, 60)]

    submit = load_payload("compose_extension_submit_action", url)
    submit["value"]["data"] = {"customer": late["value"], "tags": "询价客户"}
    status, body = await post(client, submit)
    assert status == 200 and "宁波客户59" in texts(body["composeExtension"]["attachments"][0]["content"])
    async with client.app[DATABASE].unit_of_work() as uow:
        tagged = {a.tag for a in await uow.assignments.active_for(int(late["value"]))}
    assert tagged == {"询价客户"}


async def test_picker_submit_with_a_typed_name_gets_an_error_without_buttons(kebiao: Any) -> None:
    client, _fake, url = kebiao
    submit = load_payload("compose_extension_submit_action", url)
    submit["value"]["data"] = {"customer": "华为", "tags": "VIP客户"}  # two customers match the name
    status, body = await post(client, submit)
    assert status == 200
    shown = body["task"]["value"]["card"]["content"]
    assert "出错了" in texts(shown) and "请从列表中选择客户" in texts(shown)
    assert "Action.Execute" not in json.dumps(shown)  # a task module cannot run Action.Execute
    async with client.app[DATABASE].unit_of_work() as uow:
        held = [await uow.assignments.active_for(cid) for cid in (1, 2, 3)]
    assert held == [[], [], []]


async def test_typeahead_for_another_dataset_answers_no_results(kebiao: Any) -> None:
    client, _fake, url = kebiao
    body = _search(url, "ABC", "ta-9")
    body["value"]["dataset"] = "npm"
    status, answer = await post(client, body)
    assert status == 200 and answer["value"]["results"] == []


# ---------------------------------------------------------------- linked channels: commands need an @mention


async def test_unaddressed_channel_messages_starting_with_command_words_are_matched(kebiao: Any) -> None:
    client, fake, url = kebiao
    link = await link_channel(client, url)
    assert "本会话已绑定到 ABC公司" in texts(cards(fake)[0])  # the @mentioned 绑定 ran as a command
    said = ("建议你们尽快退款", "帮助我处理一下退款", "查看一下报价单", "查找一下合同，我们要续费")
    for n, words in enumerate(said):  # customers and agents talking; RSC delivers them without a mention
        body = dict(link, text=words, id=f"said-{n}", entities=[])
        assert (await post(client, body))[0] == 200
    replies = cards(fake)[1:]
    assert len(replies) == 2 and all(actions(r, "suggestion.accept") for r in replies)  # suggestion cards only
    assert "询价客户" in texts(replies[0]) and "续费意向" in texts(replies[1])
    for reply in replies:  # no dry-run, help or error card was posted into the customer's conversation
        assert "可能对应的标签" not in texts(reply) and "出错了" not in texts(reply) and "使用帮助" not in texts(reply)
    async with client.app[DATABASE].unit_of_work() as uow:
        held = {a.tag for a in await uow.assignments.active_for(1)}
    assert "售后工单" in held  # auto-applied from 退款 (managers-only here, so no card in the channel)
    mentioned = dict(link, text="<at>客标</at> 帮助", id="said-help")
    await post(client, mentioned)
    assert "使用帮助" in texts(cards(fake)[-1])
