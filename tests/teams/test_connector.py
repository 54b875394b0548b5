"""The lean Bot Connector path sends what the SDK's ConnectorClient sends and fails the way it fails."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar
from urllib.parse import urljoin

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    CardAction,
    ChannelAccount,
    ConversationAccount,
    Entity,
    Mention,
    SuggestedActions,
)
from botframework.connector.aio import ConnectorClient
from botframework.connector.models import ErrorResponseException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msrest.exceptions import ClientRequestError

from bots.teams.connector import ConnectorRetry, LeanConnectorClient, _segment, request_url
from bots.teams.wire import to_wire, to_wire_json
from tests.teams.conftest import APP_ID, load_payload
from tests.teams.fake_connector import FakeConnector
from tests.teams.tokens import BOT_TOKEN, StaticTokenCredentials

CARD = {
    "type": "AdaptiveCard",
    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
    "version": "1.5",
    "body": [
        {"type": "TextBlock", "text": "为 ABC公司 建议的标签", "weight": "Bolder", "wrap": True},
        {"type": "FactSet", "facts": [{"title": "到期", "value": "3 天后"}], "spacing": None},
    ],
    "actions": [{"type": "Action.Execute", "verb": "accept", "data": {"tag": "询价客户", "n": 3, "x": 1.5}}],
}
THREAD = "19:abc123@thread.tacv2;messageid=1732504800123"
SENT_HEADERS = ("Accept", "Content-Type", "Authorization", "User-Agent", "x-ms-conversation-id")


class Colour(Enum):
    BLUE = "blue"


class Open(Entity):  # type: ignore[misc]
    """An entity whose map keeps unnamed properties (msrest's additional_properties convention)."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "additional_properties": {"key": "", "type": "{object}"},
        "type": {"key": "type", "type": "str"},
        "kind": {"key": "kind", "type": "str"},
    }


def _reply(card: Any = CARD) -> Activity:
    """A card reply addressed the way a turn addresses it."""
    inbound = Activity().deserialize(load_payload("personal_message", "http://127.0.0.1:1/"))
    reply = MessageFactory.attachment(CardFactory.adaptive_card(card))
    return TurnContext.apply_conversation_reference(reply, TurnContext.get_conversation_reference(inbound))


def _activities() -> dict[str, Activity]:
    """Activities covering every kind of attribute the Bot Framework models declare."""
    card = _reply()
    card.channel_data = {"tenant": {"id": "72f988bf"}, "notification": {"alert": True}}
    text = MessageFactory.text('收到：<b>ABC公司</b> & "引号"')
    text.entities = [
        Mention(mentioned=ChannelAccount(id="29:1", name="王丽"), text="<at>王丽</at>", type="mention"),
        Entity(type="clientInfo"),
    ]
    text.entities[1].additional_properties = {"locale": "zh-CN"}  # msrest drops what the map does not name
    kept = Open(type="opened")
    kept.kind = "declared"
    kept.additional_properties = {"kind": "unnamed wins", "extra": [1]}  # written first, so kept
    text.entities.append(kept)
    text.timestamp = datetime(2024, 11, 25, 3, 20, 0, 123456, tzinfo=UTC)
    text.type = ActivityTypes.message  # an enum where a str is declared
    text.suggested_actions = SuggestedActions(
        to=["29:1"], actions=[CardAction(type="imBack", title="是", value={"ok": True})]
    )
    odd = _reply({"tuple": ("a", 1), "when": datetime(2024, 1, 1, tzinfo=UTC), "colour": Colour.BLUE, 1: "one"})
    odd.value = CardAction(type="messageBack", value={"k": [1, None, "v"]})  # a model inside an object
    odd.members_added = [ChannelAccount(id="28:bot"), None]  # type: ignore[list-item]
    loose = _reply()
    loose.attachments = [{"contentType": "text/plain", "content": "a dict where a model belongs"}]  # type: ignore[list-item]
    loose.conversation = ConversationAccount(id=THREAD, is_group=True, conversation_type="channel")
    return {"card": card, "text": text, "odd values": odd, "loose models": loose}


def _serializer() -> Any:
    return ConnectorClient(StaticTokenCredentials(APP_ID, BOT_TOKEN), base_url="http://127.0.0.1:1/")._serialize


@pytest.mark.parametrize("name", list(_activities()))
def test_the_wire_form_is_the_sdk_body_byte_for_byte(name: str) -> None:
    serializer = _serializer()
    activity = _activities()[name]
    expected = json.dumps(serializer.body(_activities()[name], "Activity"))
    assert json.dumps(to_wire(serializer, activity, "Activity")) == expected


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    _nested,
    max_leaves=30,
)


@pytest.mark.parametrize("name", [name for name in _activities() if name != "odd values"])
def test_the_request_body_is_the_sdk_body_text(name: str) -> None:
    serializer = _serializer()
    expected = json.dumps(serializer.body(_activities()[name], "Activity"))
    assert to_wire_json(serializer, _activities()[name], "Activity") == expected


def test_a_value_msrest_writes_as_its_str_is_written_as_its_json_value() -> None:
    """msrest writes a tuple in card content as its Python repr; the request body has the JSON array. Values JSON
    has no form for (a date, an enum) are still written by msrest, and the rest of the body is the SDK's."""
    serializer = _serializer()
    expected = json.loads(json.dumps(serializer.body(_activities()["odd values"], "Activity")))
    written = json.loads(to_wire_json(serializer, _activities()["odd values"], "Activity"))
    assert expected["attachments"][0]["content"]["tuple"] == "('a', 1)"
    expected["attachments"][0]["content"]["tuple"] = ["a", 1]
    assert written == expected
    assert written["attachments"][0]["content"]["when"] == "2024-01-01T00:00:00.000Z"
    assert written["attachments"][0]["content"]["colour"] == "Colour.BLUE"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=JSON, channel_data=JSON)
def test_any_json_card_content_is_written_as_msrest_writes_it(content: Any, channel_data: Any) -> None:
    serializer = _serializer()
    activity = _reply({"body": content})
    activity.channel_data = channel_data
    expected_activity = _reply({"body": content})
    expected_activity.channel_data = channel_data
    expected = json.dumps(serializer.body(expected_activity, "Activity"))
    assert json.dumps(to_wire(serializer, activity, "Activity")) == expected
    assert to_wire_json(serializer, activity, "Activity") == expected


class RawConnector(FakeConnector):
    """The fake connector, also keeping each request's raw path, headers and body bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[tuple[str, dict[str, str], bytes]] = []

    async def _keep(self, request: web.Request) -> None:
        headers = {name: request.headers.get(name, "") for name in SENT_HEADERS}
        self.raw.append((request.raw_path, headers, await request.read()))

    async def _send(self, request: web.Request) -> web.Response:
        await self._keep(request)
        return await super()._send(request)

    async def _update(self, request: web.Request) -> web.Response:
        await self._keep(request)
        return await super()._update(request)

    def app(self) -> web.Application:
        """Served under /apac/ too, as Teams' regional service URLs have a path."""
        app = super().app()
        app.add_subapp("/apac/", super().app())
        return app


@pytest.fixture
async def raw() -> AsyncIterator[tuple[RawConnector, str]]:
    fake = RawConnector()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("/apac/"))
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


def _sdk(url: str) -> ConnectorClient:
    return ConnectorClient(StaticTokenCredentials(APP_ID, BOT_TOKEN), base_url=url)


def _lean(url: str, session: ClientSession, retry: ConnectorRetry | None = None) -> LeanConnectorClient:
    return LeanConnectorClient(_sdk(url), session, retry or ConnectorRetry(backoff_factor=0.0))


Call = Callable[[Any], Awaitable[Any]]
CALLS: dict[str, Call] = {
    "reply": lambda client: client.conversations.reply_to_activity(THREAD, "1732504800123", _reply()),
    "send": lambda client: client.conversations.send_to_conversation(THREAD, _reply()),
    "update": lambda client: client.conversations.update_activity(THREAD, "1:7", _reply()),
}


@pytest.mark.parametrize("operation", list(CALLS))
async def test_the_lean_client_sends_the_sdk_request_and_reads_its_answer(
    raw: tuple[RawConnector, str], session: ClientSession, operation: str
) -> None:
    fake, url = raw
    sdk = _sdk(url)
    expected = await CALLS[operation](sdk)
    answered = await CALLS[operation](_lean(url, session))
    await sdk.__aexit__(None, None, None)
    assert type(answered) is type(expected) and answered.id.startswith("1:")
    (sdk_path, sdk_headers, sdk_body), (path, headers, body) = fake.raw
    assert path == sdk_path and "/apac/v3/conversations/19%3Aabc123%40thread.tacv2%3Bmessageid%3D" in path
    assert body == sdk_body
    assert headers == sdk_headers and headers["Authorization"] == f"Bearer {BOT_TOKEN}"


async def test_a_refused_reply_raises_what_the_sdk_raises_and_is_not_posted_twice(
    raw: tuple[RawConnector, str], session: ClientSession
) -> None:
    fake, url = raw
    fake.fail(403)
    with pytest.raises(ErrorResponseException) as sdk_error:
        await CALLS["reply"](_sdk(url))
    fake.fail(503, retry_after="0")
    with pytest.raises(ErrorResponseException):
        await CALLS["reply"](_lean(url, session))  # a POST is never repeated: it could post twice
    fake.fail(429, retry_after="7")
    with pytest.raises(ErrorResponseException) as throttled:
        await CALLS["send"](_lean(url, session))
    assert throttled.value.response.status_code == 429
    assert throttled.value.response.headers["retry-after"] == "7"
    assert throttled.value.error.error.code == "TooManyRequests"
    fake.fail(403)
    with pytest.raises(ErrorResponseException) as lean_error:
        await CALLS["reply"](_lean(url, session))
    assert str(lean_error.value) == str(sdk_error.value)
    assert lean_error.value.error.error.code == sdk_error.value.error.error.code == "ConversationBlockedByUser"
    assert [call.status for call in fake.calls] == [403, 503, 429, 403]


async def test_an_update_is_retried_on_5xx_within_the_sdk_budget(
    raw: tuple[RawConnector, str], session: ClientSession
) -> None:
    fake, url = raw
    fake.fail(503, times=2)
    assert (await CALLS["update"](_lean(url, session))).id == "1:7"
    assert [call.status for call in fake.calls] == [503, 503, 200]
    fake.fail(500, times=4)
    with pytest.raises(ClientRequestError, match="too many 500"):
        await CALLS["update"](_lean(url, session))
    assert len(fake.calls) == 3 + 4


async def test_an_unreachable_connector_is_a_client_request_error(session: ClientSession) -> None:
    with pytest.raises(ClientRequestError):
        await CALLS["reply"](_lean("http://127.0.0.1:9/", session))


def test_backoff_follows_the_sdk_policy() -> None:
    retry = ConnectorRetry()
    assert [retry.backoff(n) for n in (1, 2, 3)] == [0.0, 1.6, 3.2]
    assert retry.backoff(2, "5") == 5.0 and retry.backoff(2, "soon") == 1.6
    assert retry.retries_status("PUT", 503) and retry.retries_status("PUT", 408)
    assert not retry.retries_status("POST", 503) and not retry.retries_status("PUT", 501)
    assert retry.retries_status("PUT", 429, has_retry_after=True) and not retry.retries_status("PUT", 429)


@settings(max_examples=200, deadline=None)
@given(
    base=st.sampled_from(
        ["http://127.0.0.1:1/", "https://smba.trafficmanager.net/apac/", "http://h//x/", "http://h/a/./b/", "http://h/?q=1/"]
    ),
    ids=st.lists(st.sampled_from(["", ".", "..", "a:1", "19:abc@thread.tacv2", "17325"]) | st.text(), max_size=3),
)
def test_a_request_url_is_the_base_joined_as_msrest_joins_it(base: str, ids: list[str]) -> None:
    path = "/".join(["v3", "conversations", *(_segment(i) for i in ids)])
    assert request_url(base, path) == urljoin(base, path)
