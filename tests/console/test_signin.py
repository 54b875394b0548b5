"""Teams SSO (Entra ID v2 tokens checked against a local JWKS), WeCom web sign-in (fake API), refusals."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app import create_app
from tests.console.conftest import ClientFactory, console_settings, csrf_of, seed
from tests.teams.tokens import SigningKey
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi, running_fake_wecom

APP_ID = "0d9e3c1a-1b2c-4d5e-8f90-123456789abc"
HOST = "kebiao.contoso.cn"
AUDIENCE = f"api://{HOST}/{APP_ID}"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
KEY = SigningKey(kid="console-key", name="console")
OTHER = SigningKey(kid="console-key", name="attacker")


@pytest.fixture
async def jwks_url() -> AsyncIterator[str]:
    async def keys(request: web.Request) -> web.Response:
        return web.json_response({"keys": [KEY.jwk()]})

    app = web.Application()
    app.router.add_get("/keys", keys)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/keys"
    await runner.cleanup()


def mint(oid: str | None, *, key: SigningKey = KEY, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
        "aud": AUDIENCE,
        "tid": TENANT,
        "oid": oid,
        "name": "Teams 用户",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 3600,
        **overrides,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


@pytest.fixture
async def teams_client(aiohttp_client: ClientFactory, tmp_path: Path, jwks_url: str) -> TestClient:
    settings = console_settings(
        tmp_path,
        MICROSOFT_APP_ID=APP_ID,
        MICROSOFT_APP_PASSWORD="bot-secret-for-tests",
        KEBIAO_PUBLIC_HOST=HOST,
        KEBIAO_CONSOLE_AAD_JWKS_URL=jwks_url,
        KEBIAO_CONSOLE_AAD_TENANTS=TENANT,
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    await seed(app)
    return client


async def _post_token(client: TestClient, token: str) -> tuple[int, dict[str, Any]]:
    csrf = await csrf_of(client, "/console/teams")
    response = await client.post("/console/signin/teams", json={"token": token}, headers={"X-CSRF-Token": csrf})
    return response.status, await response.json()


async def test_teams_tab_page_may_be_framed_by_teams_only(teams_client: TestClient) -> None:
    response = await teams_client.get("/console/teams")
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors https://teams.microsoft.com" in csp and "'none'" not in csp.split("frame-ancestors")[1]
    assert "X-Frame-Options" not in response.headers
    html = await response.text()
    assert "vendor/teams-js/MicrosoftTeams.min.js" in html and "teams.js" in html


async def test_teams_manager_signs_in_and_agent_is_refused(teams_client: TestClient) -> None:
    status, body = await _post_token(teams_client, mint("manager-1"))
    assert status == 200 and body["location"] == "/console/taxonomy"
    page = await teams_client.get("/console/taxonomy")
    assert page.status == 200 and "王经理" in await page.text()
    # pages of a Teams session are shown inside Teams, so Teams may frame them
    assert "frame-ancestors https://teams.microsoft.com" in page.headers["Content-Security-Policy"]
    teams_client.session.cookie_jar.clear()
    status, body = await _post_token(teams_client, mint("agent-1"))
    assert status == 403 and body["location"] == "/console/refused"
    refused = await teams_client.get("/console/taxonomy", allow_redirects=False)
    assert refused.status == 303  # no session was created for the agent


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: mint("manager-1", exp=int(time.time()) - 3600), id="expired"),
        pytest.param(lambda: mint("manager-1", aud="api://other/app"), id="wrong-audience"),
        pytest.param(lambda: mint("manager-1", iss="https://sts.windows.net/x/"), id="wrong-issuer"),
        pytest.param(lambda: mint("manager-1", key=OTHER), id="forged-signature"),
        pytest.param(
            lambda: mint(
                "manager-1",
                tid="00000000-0000-0000-0000-000000000000",
                iss="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
            ),
            id="other-tenant",
        ),
        pytest.param(lambda: mint(None), id="no-object-id"),
        pytest.param(lambda: jwt.encode({"oid": "manager-1"}, "s" * 40, algorithm="HS256"), id="hs256"),
        pytest.param(lambda: "not a token", id="garbage"),
    ],
)
async def test_bad_teams_tokens_are_refused(teams_client: TestClient, token: Any) -> None:
    status, body = await _post_token(teams_client, token())
    assert status == 401 and body["error"]
    assert (await teams_client.get("/console/taxonomy", allow_redirects=False)).status == 303


async def test_teams_signin_needs_the_csrf_header(teams_client: TestClient) -> None:
    await csrf_of(teams_client, "/console/teams")
    response = await teams_client.post("/console/signin/teams", json={"token": mint("manager-1")})
    assert response.status == 403


@pytest.fixture
async def fake_wecom_api() -> AsyncIterator[FakeWeComApi]:
    async with running_fake_wecom() as fake:
        yield fake


async def test_wecom_web_signin(aiohttp_client: ClientFactory, tmp_path: Path, fake_wecom_api: FakeWeComApi) -> None:
    settings = console_settings(
        tmp_path,
        WECOM_CORP_ID=CORP_ID,
        WECOM_SECRET=SECRET,
        WECOM_AGENT_ID=AGENT_ID,
        WECOM_API_BASE=fake_wecom_api.api_base,
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    await seed(app)
    await csrf_of(client)
    start = await client.get("/console/signin/wecom", allow_redirects=False)
    assert start.status == 302
    location = start.headers["Location"]
    assert location.startswith("https://login.work.weixin.qq.com/wwlogin/sso/login?") and f"appid={CORP_ID}" in location
    state = location.split("state=")[1].split("&")[0]
    fake_wecom_api.sign_in_codes["CODE-M"] = "manager-1"
    fake_wecom_api.sign_in_codes["CODE-A"] = "agent-1"
    bad = await client.get("/console/signin/wecom/callback", params={"code": "CODE-M", "state": "forged"})
    assert bad.status == 400
    agent = await client.get("/console/signin/wecom/callback", params={"code": "CODE-A", "state": state})
    assert agent.status == 403 and "经理" in await agent.text() and "高危流失" not in await agent.text()
    reused = await client.get("/console/signin/wecom/callback", params={"code": "CODE-A", "state": state})
    assert reused.status == 401  # a code works once
    ok = await client.get(
        "/console/signin/wecom/callback", params={"code": "CODE-M", "state": state}, allow_redirects=False
    )
    assert ok.status == 303
    assert (await client.get("/console/customers")).status == 200
    assert [c.api for c in fake_wecom_api.calls if c.api == "auth/getuserinfo"] == ["auth/getuserinfo"] * 3


async def test_demoted_manager_loses_access_at_once(client: TestClient) -> None:
    from app import DATABASE
    from core.tags.users import set_role
    from core.types import Role
    from tests.console.conftest import NOW

    await _post_token_less_signin(client)
    assert (await client.get("/console/customers")).status == 200
    async with client.app[DATABASE].unit_of_work() as uow:
        await set_role(uow, "manager-1", Role.AGENT, [], NOW)
    response = await client.get("/console/customers")
    assert response.status == 403 and "高危流失" not in await response.text()
    assert "kebiao_console=" in response.headers["Set-Cookie"]  # the session is replaced by a signed-out one
    async with client.app[DATABASE].unit_of_work() as uow:
        await set_role(uow, "manager-1", Role.MANAGER, [], NOW)
    assert (await client.get("/console/customers", allow_redirects=False)).status == 303


async def _post_token_less_signin(client: TestClient) -> None:
    """Sign in as manager-1 through a session cookie minted with the app's own signing key."""
    from app import CONSOLE
    from console import sessions

    services = client.app[CONSOLE].services  # type: ignore[attr-defined]
    session = sessions.anonymous(int(time.time()), 3600).signed_in_as(
        "manager-1", "wecom", "王经理", int(time.time()) + 3600
    )
    client.session.cookie_jar.update_cookies({sessions.COOKIE: sessions.encode(session, services.secret)})
