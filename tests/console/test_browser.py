"""The console in headless Chromium (Debian's package, driven by Playwright): the manager's whole flow.

KEBIAO_TEST_BROWSER set (CI): a missing Chromium fails these tests. Unset: they are skipped without it.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from app import LEARNING, create_app
from core.learning.history import import_history
from tests.chromium import chromium
from tests.conftest import build_sample_taxonomy
from tests.console.conftest import TOKEN, console_settings, seed
from tests.console.test_signin import APP_ID, HOST, TENANT, jwks_url, mint  # noqa: F401 (fixture)
from tests.learning.support import messages

SHOTS = Path(os.environ.get("KEBIAO_SCREENSHOTS", "")) if os.environ.get("KEBIAO_SCREENSHOTS") else None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def server(aiohttp_server: Any, tmp_path: Path, jwks_url: str) -> TestServer:  # noqa: F811
    settings = console_settings(
        tmp_path,
        MICROSOFT_APP_ID=APP_ID,
        MICROSOFT_APP_PASSWORD="bot-secret-for-tests",
        KEBIAO_PUBLIC_HOST=HOST,
        KEBIAO_CONSOLE_AAD_JWKS_URL=jwks_url,
        KEBIAO_CONSOLE_AAD_TENANTS=TENANT,
    )
    app = create_app(settings)
    srv: TestServer = await aiohttp_server(app)
    await seed(app)
    return srv


async def _new_page(browser: Any, width: int = 1280, height: int = 900) -> Any:
    """A page in a fresh context that prefers Chinese, as the product's users' browsers do."""
    context = await browser.new_context(
        viewport={"width": width, "height": height}, locale="zh-CN", accept_downloads=True
    )
    return await context.new_page()


def _url(server: TestServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def _shot(page: Any, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def _sign_in(page: Any, server: TestServer) -> None:
    await page.goto(_url(server, "/console/"))
    assert page.url.endswith("/console/signin")
    await page.fill("#token", TOKEN)
    await page.click("form[action='/console/signin/token'] button")
    await page.wait_for_url("**/console/taxonomy")


async def test_edit_validate_preview_save_rollback(browser: Any, server: TestServer) -> None:
    page = await _new_page(browser)
    await _sign_in(page, server)
    await page.click("a.tag-name:text-is('询价客户')")
    await page.fill("#f-color", "blue")
    await page.click("#preview-button")
    error = page.locator("#err-color")
    await error.wait_for()
    assert "#RRGGBB" in await error.inner_text()
    assert await page.get_attribute("#f-color", "aria-invalid") == "true"
    assert await page.evaluate("document.activeElement.id") == "f-color"  # focus goes to the first problem
    await page.fill("#f-color", "#2F80ED")
    await page.fill("#f-keywords", "询价")
    await page.click("#preview-button")
    await page.locator("#preview-shifts").wait_for()
    assert "能给我报价吗" in await page.inner_text("main")
    await _shot(page, "preview-desktop")
    await page.click("#save-button")
    await page.wait_for_url("**/console/taxonomy/history?done=saved&v=2")
    assert "已保存为版本 2" in await page.inner_text(".notice")
    await page.click("#v1 button")
    await page.wait_for_url("**/console/taxonomy/history?done=rolled_back&v=3")
    assert "已回滚，当前为版本 3" in await page.inner_text(".notice")
    await page.goto(_url(server, "/console/taxonomy"))
    assert "报价" in await page.inner_text("main")  # the keyword is back


async def test_reports_draw_charts_and_export_csv(browser: Any, server: TestServer) -> None:
    page = await _new_page(browser)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await _sign_in(page, server)
    await page.click("nav a:text-is('报表')")
    for chart in ("usage-chart", "rate-chart", "matrix-chart"):
        await page.locator(f"#{chart}[data-drawn='1'] canvas").first.wait_for()
        # painted pixels: more than axes alone once the series are drawn (the charts animate in)
        await page.wait_for_function(
            """id => { let n = 0;
                 for (const c of document.querySelectorAll('#' + id + ' canvas')) {
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) n++; } }
                 return n > 3000; }""",
            arg=chart,
            timeout=10_000,
        )
    await _shot(page, "reports-desktop")
    async with page.expect_download() as info:
        await page.click("#tags-h ~ a.csv")
    download = await info.value
    text = Path(await download.path()).read_text(encoding="utf-8-sig")
    assert text.startswith("dimension,tag,in_taxonomy,holders") and "VIP客户" in text
    assert not errors, errors  # no CSP violations or script errors


async def test_narrow_screen_and_keyboard(browser: Any, server: TestServer) -> None:
    page = await _new_page(browser, 320, 700)
    await _sign_in(page, server)
    pages = (
        "/console/taxonomy",
        "/console/reports",
        "/console/customers?q=测试",
        "/console/taxonomy/history",
        "/console/rules",
        "/console/rules/new",
        "/console/keywords",
    )
    for path in pages:
        await page.goto(_url(server, path))
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways at 320 px by {overflow} px"
    await page.goto(_url(server, "/console/customers/1"))
    await _shot(page, "customer-320")
    await page.goto(_url(server, "/console/taxonomy"))
    await _shot(page, "taxonomy-320")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.goto(_url(server, "/console/reports"))
    await page.locator("#matrix-chart[data-drawn='1']").wait_for()
    await _shot(page, "reports-320")


async def test_rule_checked_tested_over_history_and_saved(browser: Any, server: TestServer) -> None:
    page = await _new_page(browser)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await _sign_in(page, server)
    await page.click("nav a:text-is('规则')")
    await page.wait_for_url("**/console/rules")
    await page.click("#add-rule")
    await page.fill("#f-name", "VIP都活跃")
    await page.select_option("#f-trigger", "daily")
    await page.fill("#f-when", "has: 贵宾")
    await page.fill("#f-then", "- add: 活跃客户")
    await page.click("#test-button")
    error = page.locator("#err-when")
    await error.wait_for()
    assert "贵宾" in await error.inner_text()
    assert await page.evaluate("document.activeElement.id") == "f-when"  # focus goes to the problem
    await page.fill("#f-when", "has: VIP客户")
    await page.check("#f-enabled")
    await page.click("#test-button")
    await page.locator("#rule-forecast").wait_for()
    assert await page.inner_text("#forecast-fired") == "15"
    assert "活跃客户 × 15" in await page.inner_text("#forecast-gain")
    await _shot(page, "rule-test-desktop")
    await page.click("#save-button")
    await page.wait_for_url("**/console/rules?done=saved&v=2")
    assert "已保存为版本 2" in await page.inner_text(".notice")
    assert "持有标签 VIP客户" in await page.inner_text("#rules")
    await page.goto(_url(server, "/console/taxonomy/history"))
    added = await page.inner_text("#v2 .diff-rules li.diff-added")  # the version's diff names the new rule
    assert "VIP都活跃" in added and "每天 · 持有标签 VIP客户 → 添加 活跃客户" in added
    # no CSP violation or script error (the 422 of the refused draft is the browser noting the status)
    assert not [e for e in errors if "status of 422" not in e], errors


async def test_keyword_candidate_added_in_one_click(browser: Any, server: TestServer) -> None:
    names = {"price": ["询价客户"], "repair": ["售后工单"], None: []}
    lines = [json.dumps({"text": t, "tags": names[k]}, ensure_ascii=False) for t, k in messages(120)]
    await import_history(server.app[LEARNING], lines, build_sample_taxonomy(), datetime.now(UTC))
    page = await _new_page(browser)
    await _sign_in(page, server)
    await page.click("nav a:text-is('关键词候选')")
    await page.wait_for_url("**/console/keywords")
    section = page.locator("section", has=page.locator("h2", has_text="售后工单"))
    word = await section.locator("th.word").first.inner_text()
    await _shot(page, "keywords-desktop")
    await section.locator("button.add-keyword").first.click()
    await page.wait_for_url("**/console/keywords?*done=added*")
    assert f"已将“{word}”添加为“售后工单”的关键词，当前为版本 2" in await page.inner_text(".notice")
    await page.goto(_url(server, "/console/taxonomy"))
    assert word in await page.inner_text("main")


TEAMS_STUB = (
    "window.microsoftTeams = { app: { initialize: function () { return Promise.resolve(); } },"
    " authentication: { getAuthToken: function () { return Promise.resolve(%r); } } };"
)


async def _teams_tab(browser: Any, server: TestServer, oid: str) -> Any:
    """The tab page with the Teams JS library replaced by a stand-in host handing out a minted token."""
    page = await _new_page(browser)
    token = mint(oid)

    async def fulfil(route: Any) -> None:
        await route.fulfill(status=200, content_type="application/javascript", body=TEAMS_STUB % token)

    await page.route("**/vendor/teams-js/MicrosoftTeams.min.js*", fulfil)
    await page.goto(_url(server, "/console/teams"))
    return page


async def test_teams_tab_signs_a_manager_in_and_refuses_an_agent(browser: Any, server: TestServer) -> None:
    manager = await _teams_tab(browser, server, "manager-1")
    await manager.wait_for_url("**/console/taxonomy")
    assert "王经理" in await manager.inner_text("header")
    agent = await _teams_tab(browser, server, "agent-1")
    await agent.wait_for_url("**/console/refused")
    text = await agent.inner_text("main")
    assert "经理" in text and "高危流失" not in text
    await _shot(agent, "refused")


async def test_change_without_csrf_token_is_refused(browser: Any, server: TestServer) -> None:
    page = await _new_page(browser)
    await _sign_in(page, server)
    await page.goto(_url(server, "/console/customers/1"))
    await page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    await page.fill("#add", "活跃客户")
    await page.click("form.inline button[type=submit]")
    await page.wait_for_load_state()
    assert "安全校验失败" in await page.inner_text("main")
    await page.goto(_url(server, "/console/customers/1"))
    held = await page.locator("section[aria-labelledby=tags-h] ul.held").all_inner_texts()
    assert held and not any("活跃客户" in h for h in held)  # nothing was changed
    assert "活跃客户" not in await page.inner_text(".timeline")
