"""Console pages through the real app: sign-in, security headers, CSRF, taxonomy edit/preview/save/rollback."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestClient

from app import create_app
from tests.console.conftest import TOKEN, ClientFactory, console_settings, csrf_of, sign_in


async def test_signed_out_visitor_goes_to_signin(client: TestClient) -> None:
    response = await client.get("/console/taxonomy", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console/signin"


async def test_admin_token_signin_and_security_headers(client: TestClient) -> None:
    csrf = await sign_in(client)
    response = await client.get("/console/taxonomy")
    assert response.status == 200
    html = await response.text()
    assert "询价客户" in html and "高危流失" in html and csrf in html
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in html and " style=" not in html  # no inline script or style


async def test_wrong_token_is_refused(client: TestClient) -> None:
    csrf = await csrf_of(client)
    response = await client.post("/console/signin/token", data={"csrf": csrf, "token": TOKEN + "x"})
    assert response.status == 401
    assert "令牌不正确" in await response.text()


async def test_post_without_csrf_token_is_refused(client: TestClient) -> None:
    await sign_in(client)
    response = await client.post("/console/taxonomy/rollback", data={"version": "1"})
    assert response.status == 403
    assert "CSRF" in await response.text()
    response = await client.post("/console/taxonomy/rollback", data={"version": "1", "csrf": "forged"})
    assert response.status == 403


async def test_signin_form_needs_csrf_too(client: TestClient) -> None:
    response = await client.post("/console/signin/token", data={"token": TOKEN}, allow_redirects=False)
    assert response.status == 403


async def test_edit_shows_problem_in_place_then_preview_save_and_rollback(client: TestClient) -> None:
    csrf = await sign_in(client)
    form = {
        "csrf": csrf,
        "original_dimension": "stage",
        "original_name": "询价客户",
        "dimension": "stage",
        "name": "询价客户",
        "color": "blue",
        "keywords": "报价、询价、多少钱、价格",
        "ttl_days": "90",
        "messages": "50",
    }
    response = await client.post("/console/taxonomy/preview", data=form)
    assert response.status == 422
    html = await response.text()
    assert 'id="err-color"' in html and "#RRGGBB" in html
    assert re.search(r'id="f-color"[^>]*aria-invalid="true"', html)
    response = await client.post("/console/taxonomy/preview", data=form | {"color": "#2F80ED", "keywords": "询价"})
    assert response.status == 200
    html = await response.text()
    assert "能给我报价吗" in html  # 报价 no longer matches: that message would lose 询价客户
    row = re.search(r"<td>询价客户</td><td[^>]*>\+(\d+)</td><td[^>]*>−(\d+)</td>", html)
    assert row and row.groups() == ("0", "4"), row  # 报价 and 多少钱 (twice each) no longer match
    draft = re.search(r'name="draft" value="([^"]+)"', html)
    assert draft
    import html as htmllib

    response = await client.post(
        "/console/taxonomy/save",
        data={"csrf": csrf, "base_version": "1", "draft": htmllib.unescape(draft.group(1))},
        allow_redirects=False,
    )
    assert response.status == 303 and "v=2" in response.headers["Location"]
    history = await (await client.get(response.headers["Location"])).text()
    assert "已保存为版本 2" in history and "#2F80ED" in history
    response = await client.post(
        "/console/taxonomy/rollback", data={"csrf": csrf, "version": "1"}, allow_redirects=False
    )
    assert response.status == 303 and "v=3" in response.headers["Location"]
    tree = await (await client.get("/console/taxonomy")).text()
    assert "版本 3" in tree and "报价" in tree


async def test_english_by_accept_language(client: TestClient) -> None:
    await sign_in(client)
    html = await (await client.get("/console/taxonomy", headers={"Accept-Language": "en-US,en;q=0.9"})).text()
    assert "Taxonomy" in html and '<html lang="en">' in html


async def test_session_cookie_attributes(client: TestClient) -> None:
    response = await client.get("/console/signin")
    cookie = response.headers["Set-Cookie"]
    assert "kebiao_console=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/console" in cookie and "Secure" not in cookie  # local development over http


async def test_secure_cookie_outside_development(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    app = create_app(console_settings(tmp_path, KEBIAO_ENV="test"))
    client = await aiohttp_client(app)
    cookie = (await client.get("/console/signin")).headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    tab = (await client.get("/console/teams")).headers["Set-Cookie"]
    assert "SameSite=None" in tab and "Secure" in tab and "Partitioned" in tab


async def test_forged_or_expired_session_is_ignored(client: TestClient) -> None:
    import time

    from console import sessions

    session = sessions.anonymous(int(time.time()), 3600).signed_in_as("manager-1", "token", "x", int(time.time()) + 60)
    forged = sessions.encode(session, b"not-the-secret-" * 3)
    client.session.cookie_jar.update_cookies({sessions.COOKIE: forged})
    assert (await client.get("/console/taxonomy", allow_redirects=False)).status == 303
    assert sessions.decode(sessions.encode(session, b"k" * 32), b"k" * 32, int(time.time()) + 120) is None


async def test_static_assets_are_served_with_headers(client: TestClient) -> None:
    response = await client.get("/console/static/vendor/echarts/echarts.min.js")
    assert response.status == 200 and "nosniff" in response.headers["X-Content-Type-Options"]
    assert (await client.get("/console/static/vendor/echarts/LICENSE")).status == 200
    assert (await client.get("/console/static/../pages/signin.py")).status in (403, 404)


async def test_dimension_settings_preview_and_save(client: TestClient) -> None:
    csrf = await sign_in(client)
    page = await (await client.get("/console/taxonomy/dimension", params={"key": "risk"})).text()
    assert 'id="f-managers_only" name="managers_only" type="checkbox" value="1" checked' in page
    bad = await client.post(
        "/console/taxonomy/dimension/preview", data={"csrf": csrf, "key": "risk", "name": "需求阶段"}
    )
    assert bad.status == 422 and "already used" in await bad.text()
    ok = await client.post(
        "/console/taxonomy/dimension/preview", data={"csrf": csrf, "key": "risk", "name": "风险", "exclusive": "1"}
    )
    html = await ok.text()
    assert ok.status == 200 and 'name="draft"' in html
    draft = re.search(r'name="draft" value="([^"]+)"', html)
    assert draft
    import html as htmllib

    saved = await client.post(
        "/console/taxonomy/save",
        data={"csrf": csrf, "base_version": "1", "draft": htmllib.unescape(draft.group(1))},
        allow_redirects=False,
    )
    assert saved.status == 303
    tree = await (await client.get("/console/taxonomy")).text()
    assert "风险 <small>risk</small>" in tree and "仅经理可见" not in tree.split("风险 <small>risk</small>")[1][:200]
    stale = await client.post(
        "/console/taxonomy/save",
        data={"csrf": csrf, "base_version": "1", "draft": htmllib.unescape(draft.group(1))},
    )
    assert stale.status == 409 and "请重新预览" in await stale.text()
