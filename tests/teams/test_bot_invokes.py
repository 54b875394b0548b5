"""Invokes answer from local state only; references are written on change; linked chats record activity.

Teams gives a message-extension query or fetchTask about 5 seconds. Rather than timing them (tests never
assert wall-clock times; `python -m bench teams` prints invoke latency), these tests make the one external
dependency, the Bot Connector, fail every call and check that the invokes still answer in full and never
called it: their latency is the database's and the matcher's, nothing remote.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app import DATABASE
from storage import tables as t
from storage.channels import SqlChannelStore
from tests.teams.conftest import load_payload
from tests.teams.test_bot_flow import kebiao, message, post  # noqa: F401  (kebiao is a fixture)


async def test_message_extension_invokes_never_wait_on_the_connector(kebiao: Any) -> None:  # noqa: F811
    client, fake, url = kebiao
    fake.fail(503, times=100)  # every call to the connector would fail
    query = load_payload("compose_extension_query", url)
    assert query["value"]["commandId"] == "searchCustomers"  # the manifest's command id
    query["value"]["parameters"] = [{"name": "query", "value": "ABC"}]
    status, body = await post(client, query)
    assert status == 200
    assert [a["preview"]["content"]["title"] for a in body["composeExtension"]["attachments"]] == ["ABC公司"]

    fetch = load_payload("compose_extension_fetch_task", url)
    fetch["value"]["messagePayload"]["body"]["content"] = "<p>麻烦发一下报价单，要退款</p>"
    status, body = await post(client, fetch)
    assert status == 200
    form = body["task"]["value"]["card"]["content"]
    tags = next(i for i in form["body"] if i.get("id") == "tags")
    assert tags["value"] == "询价客户"  # 售后工单 matched too, but it is a managers-only risk tag
    assert fake.calls == []  # neither invoke touched the connector


async def test_unchanged_conversation_reference_is_written_once(kebiao: Any) -> None:  # noqa: F811
    client, _fake, url = kebiao
    first = message(url, "帮助", "r-1")
    await post(client, first)
    store = SqlChannelStore(client.app[DATABASE].engine)
    key = f"conversation:{first['conversation']['id']}"
    saved = await store.reference("teams", key)
    assert saved is not None
    await post(client, message(url, "查看 ABC公司", "r-2"))  # same address, new activity id
    again = await store.reference("teams", key)
    assert again is not None and again.updated_at == saved.updated_at
    renamed = dict(first["from"], name="王丽（华东）")  # the user's display name changed in Teams
    await post(client, message(url, "帮助", "r-3", **{"from": renamed}))
    changed = await store.reference("teams", key)
    assert changed is not None and changed.updated_at > saved.updated_at
    assert changed.reference["user"]["name"] == "王丽（华东）"


async def test_messages_in_a_linked_chat_record_customer_activity(kebiao: Any) -> None:  # noqa: F811
    client, _fake, url = kebiao
    await post(client, message(url, "link ABC公司", "l-1"))
    await post(client, message(url, "好的，明天发合同", "l-2"))
    async with client.app[DATABASE].engine.connect() as conn:
        ca = t.customer_activity.c
        row = (await conn.execute(select(ca.last_channel, ca.last_message_at).where(ca.customer_id == 1))).first()
    assert row is not None and row.last_channel == "teams" and row.last_message_at is not None
