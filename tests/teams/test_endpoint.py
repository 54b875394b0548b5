"""POST /api/messages through the real CloudAdapter: parsing, invokes, replies, de-duplication."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.teams.conftest import Client, MemoryClaims, SampleBot, load_payload
from tests.teams.fake_connector import FakeConnector

Connector = tuple[FakeConnector, str]


async def test_personal_message_is_answered_through_the_connector(
    make_client: Client, connector: Connector
) -> None:
    fake, url = connector
    bot = SampleBot()
    client = await make_client(bot)
    response = await client.post("/api/messages", json=load_payload("personal_message", url))
    assert response.status == 200
    assert bot.turns == ["message"]
    [call] = fake.calls
    assert call.path == "/v3/conversations/a:1Qy8XcPersonalWangLi/activities/1732504800123"
    assert call.body["text"] == "收到：tag ABC公司 +VIP客户 -沉默客户"
    assert call.body["replyToId"] == "1732504800123"
    assert call.authorization == ""  # local mode: no bot token


async def test_channel_mention_is_stripped_before_the_bot_reads_it(
    make_client: Client, connector: Connector
) -> None:
    fake, url = connector
    client = await make_client(SampleBot())
    response = await client.post("/api/messages", json=load_payload("channel_message_mention", url))
    assert response.status == 200
    assert fake.calls[0].body["text"] == "收到：客户说想要报价单，ABC公司"
    assert fake.calls[0].conversation_id.startswith("19:b1c2d3e4f5a6@thread.tacv2")


async def test_conversation_updates_are_acknowledged(make_client: Client, connector: Connector) -> None:
    fake, url = connector
    fake.members["29:1mZ9ManagerZhangWei"] = {
        "id": "29:1mZ9ManagerZhangWei",
        "name": "张伟",
        "aadObjectId": "b2d6a8f4-7e31-4b0c-8c0e-9f2a1d3c4e55",
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "userRole": "user",
    }
    bot = SampleBot()
    client = await make_client(bot)
    for name in ("conversation_update_team_added", "conversation_update_personal_install"):
        response = await client.post("/api/messages", json=load_payload(name, url))
        assert response.status == 200
    assert bot.turns == ["conversationUpdate", "conversationUpdate"]
    assert fake.members_read == ["29:1mZ9ManagerZhangWei"]  # the bot's own id is not looked up


async def test_query_invoke_returns_the_sdk_model_serialised_once(
    make_client: Client, connector: Connector
) -> None:
    _, url = connector
    client = await make_client(SampleBot())
    response = await client.post("/api/messages", json=load_payload("compose_extension_query", url))
    assert response.status == 200
    body = await response.json()
    result = body["composeExtension"]
    assert result["type"] == "result"
    assert result["attachmentLayout"] == "list"
    [attachment] = result["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["body"][0]["text"] == "ABC公司"
    assert attachment["preview"]["content"]["title"] == "ABC公司"


async def test_fetch_task_and_submit_action_invokes(make_client: Client, connector: Connector) -> None:
    _, url = connector
    client = await make_client(SampleBot())
    fetch = await client.post("/api/messages", json=load_payload("compose_extension_fetch_task", url))
    assert fetch.status == 200
    task = (await fetch.json())["task"]
    assert task["type"] == "continue"
    assert task["value"]["title"] == "打标签：<p>客户投诉发货太慢，要求加急处理，还没退款</p>"
    submit = await client.post("/api/messages", json=load_payload("compose_extension_submit_action", url))
    assert submit.status == 200
    assert (await submit.json())["composeExtension"] == {
        "type": "message",
        "text": "ABC公司：紧急工单、售后工单",
    }


async def test_adaptive_card_action_invoke(make_client: Client, connector: Connector) -> None:
    _, url = connector
    client = await make_client(SampleBot())
    response = await client.post("/api/messages", json=load_payload("adaptive_card_action", url))
    assert response.status == 200
    assert await response.json() == {
        "statusCode": 200,
        "type": "application/vnd.microsoft.card.adaptive",
        "value": {
            "type": "AdaptiveCard",
            "version": "1.5",
            "body": [{"type": "TextBlock", "text": "suggestion.accept:询价客户"}],
        },
    }


async def test_an_invoke_the_bot_does_not_answer_is_refused_before_the_turn(
    make_client: Client, connector: Connector
) -> None:
    _, url = connector
    bot = SampleBot()
    client = await make_client(bot)
    payload = load_payload("compose_extension_query", url)
    payload["name"] = "composeExtension/unknownThing"
    response = await client.post("/api/messages", json=payload)
    assert response.status == 400
    assert "'composeExtension/unknownThing' is not one this bot answers" in (await response.json())["error"]
    assert bot.turns == []


async def test_bad_requests_are_refused_with_a_reason_and_the_bot_never_runs(make_client: Client) -> None:
    bot = SampleBot()
    client = await make_client(bot, max_body_bytes=4096)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": "不是JSON", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
        ({"data": "{}", "headers": {"Content-Type": "text/plain"}}, 400, "Content-Type"),
        ({"json": [1, 2]}, 400, "JSON object"),
        ({"json": {"id": "1"}}, 400, "no 'type'"),
        ({"json": {"type": "message", "text": "长" * 5000}}, 413, "exceeds 4096"),
    ]
    for kwargs, status, reason in cases:
        response = await client.post("/api/messages", **kwargs)
        assert response.status == status, kwargs
        assert reason in (await response.json())["error"]
    chunked = await client.post(
        "/api/messages",
        data=_chunks(b'{"type": "message", "text": "' + b"x" * 8000 + b'"}'),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status == 413
    assert bot.turns == []


async def _chunks(raw: bytes):  # type: ignore[no-untyped-def]
    """Stream without Content-Length so the size cap is enforced while reading."""
    for start in range(0, len(raw), 1000):
        yield raw[start : start + 1000]


async def test_retried_activity_runs_the_bot_once(make_client: Client, connector: Connector) -> None:
    fake, url = connector
    bot = SampleBot(delay=0.05)
    claims = MemoryClaims()
    client = await make_client(bot, claims=claims)
    payload = load_payload("personal_message", url)
    first, second = await asyncio.gather(
        client.post("/api/messages", json=payload), client.post("/api/messages", json=payload)
    )
    assert sorted([first.status, second.status]) == [200, 200]
    again = await client.post("/api/messages", json=payload)
    assert again.status == 200
    assert bot.turns == ["message"]
    assert len(fake.calls) == 1
    assert claims.keys == {"msteams:a:1Qy8XcPersonalWangLi:1732504800123"}
    assert claims.finished == claims.keys  # the reply went out, then the claim was finished


async def test_duplicate_invoke_is_acknowledged_without_rerunning(
    make_client: Client, connector: Connector
) -> None:
    _, url = connector
    bot = SampleBot()
    client = await make_client(bot, claims=MemoryClaims())
    payload = load_payload("adaptive_card_action", url)
    assert (await client.post("/api/messages", json=payload)).status == 200
    duplicate = await client.post("/api/messages", json=payload)
    assert duplicate.status == 200
    assert bot.turns == ["invoke"]


async def test_failed_turn_releases_its_claim_so_the_retry_runs(
    make_client: Client, connector: Connector
) -> None:
    _, url = connector
    bot = SampleBot(fail=True)
    claims = MemoryClaims()
    client = await make_client(bot, claims=claims)
    payload = load_payload("personal_message", url)
    response = await client.post("/api/messages", json=payload)
    assert response.status == 500
    assert "处理失败" not in json.dumps(await response.json(), ensure_ascii=False)
    assert claims.keys == set() and claims.finished == set()
    bot.fail = False
    assert (await client.post("/api/messages", json=payload)).status == 200
    assert bot.turns == ["message", "message"]


async def test_a_reply_the_connector_refuses_fails_the_turn_so_the_retry_replies(
    make_client: Client, connector: Connector
) -> None:
    fake, url = connector
    bot = SampleBot()
    claims = MemoryClaims()
    client = await make_client(bot, claims=claims)
    payload = load_payload("personal_message", url)
    fake.fail(503, times=1)
    assert (await client.post("/api/messages", json=payload)).status == 500  # the reply was never confirmed
    assert claims.keys == set() and claims.finished == set()
    assert (await client.post("/api/messages", json=payload)).status == 200
    assert len(fake.delivered) == 1 and claims.finished == claims.keys


async def test_emulator_mode_refuses_a_service_url_that_is_not_loopback(
    make_client: Client, connector: Connector, caplog: pytest.LogCaptureFixture
) -> None:
    fake, _ = connector
    bot = SampleBot()
    claims = MemoryClaims()
    client = await make_client(bot, claims=claims)
    for service_url in (
        "https://smba.trafficmanager.net/apac/",
        "http://10.0.0.8:3978/",
        "http://127.0.0.1.evil.example/",
    ):
        caplog.clear()
        response = await client.post("/api/messages", json=load_payload("personal_message", service_url))
        assert response.status == 403, service_url
        assert "loopback" in (await response.json())["error"]
        assert "not loopback" in caplog.text
    missing = await client.post("/api/messages", json=load_payload("personal_message", ""))
    assert missing.status == 400 and "serviceUrl" in (await missing.json())["error"]  # refused by its shape first
    invoke = await client.post("/api/messages", json=load_payload("compose_extension_query", "http://example.com/"))
    assert invoke.status == 403
    assert bot.turns == [] and claims.keys == set() and fake.calls == []


@pytest.mark.parametrize(
    "service_url", ["http://localhost:{port}/", "http://[::1]:{port}/", "http://127.0.0.2:{port}/"]
)
async def test_emulator_mode_accepts_loopback_service_urls(make_client: Client, service_url: str) -> None:
    bot = SampleBot()
    client = await make_client(bot)
    url = service_url.format(port=9)  # nothing listens: the invoke answers in the HTTP response, no reply is sent
    response = await client.post("/api/messages", json=load_payload("compose_extension_query", url))
    assert response.status == 200
    assert bot.turns == ["invoke"]
