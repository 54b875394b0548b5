"""Fixtures for the Teams platform layer: fake connector, local OpenID server, endpoint client."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import AdaptiveCardInvokeResponse, AdaptiveCardInvokeValue, ThumbnailCard
from botbuilder.schema.teams import (
    MessagingExtensionAction,
    MessagingExtensionActionResponse,
    MessagingExtensionAttachment,
    MessagingExtensionQuery,
    MessagingExtensionResponse,
    MessagingExtensionResult,
    TaskModuleContinueResponse,
    TaskModuleTaskInfo,
)

from bots.teams.adapter import TeamsEndpoint, close_adapter, create_adapter
from bots.teams.auth import BotFrameworkEndpoints, build_authentication
from bots.teams.notifier import ConversationThrottle, TeamsNotifier
from tests.teams.fake_connector import FakeConnector
from tests.teams.tokens import ISSUER, LocalCredentialFactory, OpenIdServer, SigningKey

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads" / "teams"
APP_ID = "00000000-0000-0000-0000-00000000b07a"
APP_PASSWORD = "s3cret~Kebiao.Password_不可泄露"


@dataclass(frozen=True)
class Credentials:
    """Stands in for config.TeamsSettings (bots/teams may not import config)."""

    app_id: str = ""
    app_password: str = ""
    app_type: str = "MultiTenant"
    app_tenant_id: str = ""


class FakeTime:
    """Clock + sleep pair for the notifier: sleeping only advances the clock."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


OPEN_ADAPTERS: list[CloudAdapter] = []  # made by local_notifier; closed after each test


@pytest.fixture(autouse=True)
async def close_open_adapters() -> AsyncIterator[None]:
    """Close the adapters `local_notifier` made (their pooled connector sessions) after each test."""
    yield
    while OPEN_ADAPTERS:
        await close_adapter(OPEN_ADAPTERS.pop())


def local_notifier(openid: OpenIdServer, fake_time: FakeTime, **kwargs: Any) -> TeamsNotifier:
    """A TeamsNotifier on the real CloudAdapter with local credentials, no jitter and `fake_time` for waits."""
    auth = build_authentication(
        Credentials(app_id=APP_ID, app_password=APP_PASSWORD),
        BotFrameworkEndpoints(openid_metadata_url=openid.metadata_url),
        LocalCredentialFactory(APP_ID, APP_PASSWORD),
    )
    throttle = ConversationThrottle(clock=fake_time.clock, sleep=fake_time.sleep)
    adapter = create_adapter(auth)
    OPEN_ADAPTERS.append(adapter)
    return TeamsNotifier(adapter, APP_ID, throttle=throttle, sleep=fake_time.sleep, rand=lambda: 0.0, **kwargs)


def load_payload(name: str, service_url: str | None = None) -> dict[str, Any]:
    """A recorded-style Teams activity, optionally re-pointed at the fake connector."""
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    if service_url is not None:
        data["serviceUrl"] = service_url
    return copy.deepcopy(data)


class SampleBot(TeamsActivityHandler):
    """Minimal handler for platform tests: echoes messages, answers invokes with SDK model objects."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.turns: list[str] = []
        self.delay = delay
        self.fail = fail

    async def on_turn(self, turn_context: TurnContext) -> None:
        self.turns.append(turn_context.activity.type or "")
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("处理失败 (test)")
        await super().on_turn(turn_context)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        text = TurnContext.remove_recipient_mention(turn_context.activity) or ""
        await turn_context.send_activity(MessageFactory.text(f"收到：{text.strip()}"))

    async def on_teams_messaging_extension_query(
        self, turn_context: TurnContext, query: MessagingExtensionQuery
    ) -> MessagingExtensionResponse:
        name = query.parameters[0].value
        attachment = MessagingExtensionAttachment(
            content_type=CardFactory.content_types.adaptive_card,
            content={"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": name}]},
            preview=CardFactory.thumbnail_card(ThumbnailCard(title=name, subtitle="VIP客户")),
        )
        return MessagingExtensionResponse(
            compose_extension=MessagingExtensionResult(
                type="result", attachment_layout="list", attachments=[attachment]
            )
        )

    async def on_teams_messaging_extension_fetch_task(
        self, turn_context: TurnContext, action: MessagingExtensionAction
    ) -> MessagingExtensionActionResponse:
        excerpt = action.message_payload.body.content
        return MessagingExtensionActionResponse(
            task=TaskModuleContinueResponse(
                value=TaskModuleTaskInfo(title=f"打标签：{excerpt}", height=300, width=400)
            )
        )

    async def on_teams_messaging_extension_submit_action(
        self, turn_context: TurnContext, action: MessagingExtensionAction
    ) -> MessagingExtensionActionResponse:
        tags = "、".join(action.data["tags"])
        return MessagingExtensionActionResponse(
            compose_extension=MessagingExtensionResult(
                type="message", text=f"{action.data['customer']}：{tags}"
            )
        )

    async def on_adaptive_card_invoke(
        self, turn_context: TurnContext, invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        action = invoke_value.action  # the SDK leaves Action.Execute as a plain dict
        return AdaptiveCardInvokeResponse(
            status_code=200,
            type="application/vnd.microsoft.card.adaptive",
            value={
                "type": "AdaptiveCard",
                "version": "1.5",
                "body": [{"type": "TextBlock", "text": f"{action['verb']}:{action['data']['tag']}"}],
            },
        )


class MemoryClaims:
    """In-memory ActivityClaims for tests (claim is atomic: no await between check and add)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.finished: set[str] = set()

    async def claim(self, key: str) -> bool:
        if key in self.keys:
            return False
        self.keys.add(key)
        return True

    def finish(self, key: str) -> None:
        self.finished.add(key)

    async def release(self, key: str) -> None:
        self.keys.discard(key)


@pytest.fixture
async def connector() -> AsyncIterator[tuple[FakeConnector, str]]:
    """The fake Bot Connector and its base URL (used as the activities' serviceUrl)."""
    fake = FakeConnector()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("/"))
    finally:
        await server.close()


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey(kid="kebiao-test-key-1")


@pytest.fixture
def openid(signing_key: SigningKey) -> Iterator[OpenIdServer]:
    server = OpenIdServer(
        keys=[signing_key, SigningKey(kid="webchat-only", endorsements=("webchat",), name="webchat")]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


Client = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_client(openid: OpenIdServer) -> AsyncIterator[Client]:
    """Build a real aiohttp app around TeamsEndpoint; `authenticated=True` configures an app id."""
    clients: list[TestClient] = []
    adapters: list[CloudAdapter] = []

    async def build(
        bot: SampleBot, authenticated: bool = False, claims: MemoryClaims | None = None, **kwargs: Any
    ) -> TestClient:
        if authenticated:
            credentials = Credentials(app_id=APP_ID, app_password=APP_PASSWORD)
            auth = build_authentication(
                credentials,
                BotFrameworkEndpoints(openid_metadata_url=openid.metadata_url, token_issuer=ISSUER),
                LocalCredentialFactory(APP_ID, APP_PASSWORD),
            )
        else:
            auth = build_authentication(Credentials())
        endpoint = TeamsEndpoint(create_adapter(auth), bot, claims=claims, **kwargs)
        adapters.append(endpoint.adapter)
        app = web.Application()
        app.router.add_routes(endpoint.routes())
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()
    for adapter in adapters:
        await close_adapter(adapter)  # the pooled connector session
