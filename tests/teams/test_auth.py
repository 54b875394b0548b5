"""Bot Framework JWT checks on POST /api/messages against a local OpenID metadata/JWKS server."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from botbuilder.schema import Activity
from botframework.connector.auth import AuthenticateRequestResult, BotFrameworkAuthentication

from bots.teams.adapter import ReusedClients, TeamsEndpoint, close_adapter, create_adapter
from bots.teams.auth import BotFrameworkEndpoints, build_authentication
from tests.teams.conftest import APP_ID, APP_PASSWORD, Client, Credentials, SampleBot, load_payload
from tests.teams.fake_connector import FakeConnector
from tests.teams.tokens import BOT_TOKEN, ISSUER, LocalCredentialFactory, OpenIdServer, SigningKey, mint_token

Connector = tuple[FakeConnector, str]


async def test_valid_token_runs_the_bot_and_replies_with_a_bot_token(
    make_client: Client, connector: Connector, signing_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, url = connector
    bot = SampleBot()
    client = await make_client(bot, authenticated=True)
    token = mint_token(signing_key, audience=APP_ID, service_url=url)
    response = await client.post(
        "/api/messages",
        json=load_payload("personal_message", url),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 200
    assert bot.turns == ["message"]
    [call] = fake.calls
    assert call.authorization == f"Bearer {BOT_TOKEN}"
    invoke = await client.post(
        "/api/messages",
        json=load_payload("compose_extension_query", url),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert invoke.status == 200
    for secret in (token, APP_PASSWORD, BOT_TOKEN):
        assert secret not in caplog.text


def _bad_tokens(key: SigningKey, url: str) -> dict[str, str]:
    other = SigningKey(kid=key.kid, name="impostor")
    return {
        "wrong issuer": mint_token(
            key, audience=APP_ID, service_url=url, issuer="https://sts.windows.net/evil/"
        ),
        "wrong audience": mint_token(key, audience="11111111-2222-3333-4444-555555555555", service_url=url),
        "expired": mint_token(key, audience=APP_ID, service_url=url, expires_in=-3600),
        "bad signature": mint_token(key, audience=APP_ID, service_url=url, signing_key=other),
        "unknown key": mint_token(key, audience=APP_ID, service_url=url, kid="never-published"),
        "serviceUrl mismatch": mint_token(key, audience=APP_ID, service_url="https://smba.evil.example/"),
        "not endorsed for msteams": mint_token(
            SigningKey(kid="webchat-only", endorsements=("webchat",), name="webchat"),
            audience=APP_ID,
            service_url=url,
        ),
    }


async def test_bad_tokens_get_401_and_the_bot_never_runs(
    make_client: Client, connector: Connector, signing_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, url = connector
    bot = SampleBot()
    client = await make_client(bot, authenticated=True)
    tokens = _bad_tokens(signing_key, url)
    headers = {name: f"Bearer {token}" for name, token in tokens.items()}
    headers |= {"missing header": "", "not bearer": "Basic dXNlcjpwYXNz", "garbage": "Bearer not.a.jwt"}
    for name in ("compose_extension_query", "personal_message"):
        for case, header in headers.items():
            response = await client.post(
                "/api/messages",
                json=load_payload(name, url),
                headers={"Authorization": header} if header else {},
            )
            assert response.status == 401, case
            assert await response.json() == {"error": "unauthorized"}
    assert bot.turns == []
    assert fake.calls == []
    for token in tokens.values():
        assert token not in caplog.text


async def test_local_mode_accepts_unauthenticated_activities(
    make_client: Client, connector: Connector
) -> None:
    _, url = connector
    bot = SampleBot()
    client = await make_client(bot)
    response = await client.post("/api/messages", json=load_payload("personal_message", url))
    assert response.status == 200
    assert bot.turns == ["message"]


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        (Credentials(app_id=APP_ID), "MICROSOFT_APP_PASSWORD is empty"),
        (Credentials(app_id=APP_ID, app_password="x", app_type="SingleTenant"), "MICROSOFT_APP_TENANT_ID"),
        (
            Credentials(app_id=APP_ID, app_password="x", app_type="Federated"),
            "MICROSOFT_APP_TYPE='Federated'",
        ),
    ],
)
def test_unusable_credentials_are_refused_up_front(credentials: Credentials, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_authentication(credentials)


async def test_authenticated_turns_reply_to_any_service_url_the_token_names(
    make_client: Client, signing_key: SigningKey
) -> None:
    bot = SampleBot()
    client = await make_client(bot, authenticated=True)
    public = "https://smba.trafficmanager.net/apac/"  # the loopback rule is for unauthenticated (emulator) turns only
    token = mint_token(signing_key, audience=APP_ID, service_url=public)
    response = await client.post(
        "/api/messages",
        json=load_payload("compose_extension_query", public),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 200
    assert bot.turns == ["invoke"]


class CountingAuthentication(ReusedClients):
    """The real authentication, counting the token checks it is asked for."""

    def __init__(self, inner: BotFrameworkAuthentication) -> None:
        super().__init__(inner)
        self.checks: list[str | None] = []

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        self.checks.append(activity.channel_id)
        return await super().authenticate_request(activity, auth_header)


async def test_a_valid_token_is_checked_once_with_the_activity_and_a_bad_one_before_any_refusal(
    openid: OpenIdServer, connector: Connector, signing_key: SigningKey
) -> None:
    fake, url = connector
    bot = SampleBot()
    counting = CountingAuthentication(
        build_authentication(
            Credentials(app_id=APP_ID, app_password=APP_PASSWORD),
            BotFrameworkEndpoints(openid_metadata_url=openid.metadata_url, token_issuer=ISSUER),
            LocalCredentialFactory(APP_ID, APP_PASSWORD),
        )
    )
    adapter = create_adapter(counting)
    app = web.Application()
    app.router.add_routes(TeamsEndpoint(adapter, bot).routes())
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    valid = {"Authorization": f"Bearer {mint_token(signing_key, audience=APP_ID, service_url=url)}"}
    forged = {"Authorization": f"Bearer {mint_token(signing_key, audience='someone-else', service_url=url)}"}
    try:
        assert (
            await client.post("/api/messages", json=load_payload("personal_message", url), headers=valid)
        ).status == 200
        assert counting.checks == ["msteams"]  # once, with the activity: endorsement and serviceurl included
        counting.checks.clear()
        bad_body = {**valid, "Content-Type": "application/json"}
        assert (await client.post("/api/messages", data=b"[1, 2]", headers=bad_body)).status == 400
        assert (await client.post("/api/messages", data=b"[1, 2]", headers={**bad_body, **forged})).status == 401
        assert counting.checks == [None, None]  # a refused body: the token alone was checked first
        counting.checks.clear()
        large = load_payload("personal_message", url)
        large["text"] = "报价单" * 3000  # past the parse-first size: the token is checked before reading
        assert (await client.post("/api/messages", json=large, headers=valid)).status == 200
        assert counting.checks == [None, "msteams"]
        assert (await client.post("/api/messages", json=large, headers=forged)).status == 401
        assert counting.checks == [None, "msteams", None]
    finally:
        await client.close()
        await close_adapter(adapter)
    assert bot.turns == ["message", "message"] and len(fake.delivered) == 2
