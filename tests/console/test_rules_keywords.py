"""规则 and 关键词候选 through the real app on SQLite and PostgreSQL: list, edit with problems in place, the test
over history (writes nothing), save as a version, one-click keyword add, CSRF and role refusals."""

from __future__ import annotations

import html
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from app import CONSOLE, DATABASE, LEARNING, create_app
from core.learning.history import import_history
from tests.conftest import build_sample_taxonomy
from tests.console.conftest import ClientFactory, console_settings, seed, sign_in
from tests.learning.support import messages

RULES = """
rules:
  - name: VIP客户活跃
    description: VIP 客户都算活跃客户
    trigger: daily
    when:
      all:
        - has: VIP客户
        - lacks: 沉默客户
    then:
      - add: 活跃客户
      - notify: [managers]
        title: VIP 客户
  - name: 投诉升级
    trigger: message
    enabled: false
    when: {message_tag: 紧急工单}
    then:
      - add: 投诉风险
"""
TABLES = ("tag_events", "tag_assignments", "outbox", "taxonomy_versions", "suggestions", "learning_examples")


@pytest.fixture
async def app(tmp_path: Path, database_url: str) -> web.Application:
    settings = console_settings(tmp_path, KEBIAO_DATABASE_URL=database_url)
    taxonomy = Path(settings.taxonomy_path or tmp_path / "taxonomy.yaml")
    taxonomy.write_text(taxonomy.read_text(encoding="utf-8") + RULES, encoding="utf-8")
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, app: web.Application) -> TestClient:
    client = await aiohttp_client(app)
    await seed(app)
    return client


async def _counts(client: TestClient) -> dict[str, int]:
    async with client.app[DATABASE].engine.connect() as conn:
        return {t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in TABLES}


async def _versions(client: TestClient) -> list[tuple[int, str, str]]:
    async with client.app[DATABASE].unit_of_work(read_only=True) as uow:
        return [(v.version, v.created_by, v.note) for v in await uow.taxonomies.history()]


def _rule_form(csrf: str, **changes: str) -> dict[str, str]:
    form = {
        "csrf": csrf,
        "original": "VIP客户活跃",
        "name": "VIP客户活跃",
        "description": "VIP 客户都算活跃客户",
        "trigger": "daily",
        "trigger_on": "",
        "when": "all:\n  - has: VIP客户\n  - lacks: 沉默客户\n",
        "then": "- add: 活跃客户\n- notify: [managers]\n  title: VIP 客户\n",
        "priority": "",
        "enabled": "1",
        "since": "30",
    }
    return form | changes


async def test_rules_are_listed_in_words(client: TestClient) -> None:
    await sign_in(client)
    response = await client.get("/console/rules")
    assert response.status == 200
    page = await response.text()
    assert "VIP客户活跃" in page and "投诉升级" in page
    assert "持有标签 VIP客户 且 没有标签 沉默客户" in page  # the condition in words
    assert "添加 活跃客户；通知 经理：VIP 客户" in page
    assert "每天" in page and "收到消息时" in page and "未启用" in page
    english = await client.get("/console/rules", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "holds VIP客户 and lacks 沉默客户" in await english.text()
    form = await client.get("/console/rules/rule", params={"name": "VIP客户活跃"})
    assert form.status == 200 and "- has: VIP客户" in html.unescape(await form.text())
    assert (await client.get("/console/rules/rule", params={"name": "没有"})).status == 404


async def test_edit_shows_problems_in_place(client: TestClient) -> None:
    csrf = await sign_in(client)
    before = await _counts(client)
    bad = _rule_form(csrf, when="all:\n  - has: 不存在的标签\n", priority="高")
    response = await client.post("/console/rules/test", data=bad)
    assert response.status == 422
    page = await response.text()
    assert 'id="err-priority"' in page and "whole number" in page
    response = await client.post("/console/rules/test", data=bad | {"priority": ""})
    page = await response.text()
    assert response.status == 422 and 'id="err-when"' in page and "不存在的标签" in page
    assert re.search(r'id="f-when"[^>]*aria-invalid="true"', page)
    broken = await client.post(
        "/console/rules/test", data=_rule_form(csrf, then="- add: [", name="新规则", original="")
    )
    assert broken.status == 422 and 'id="err-then"' in await broken.text()
    assert await _counts(client) == before


async def test_rule_test_over_history_writes_nothing_and_save_makes_a_version(client: TestClient) -> None:
    csrf = await sign_in(client)
    before = await _counts(client)
    # the rule kept off is tested as if on: 15 VIP customers would gain 活跃客户 and the manager hears of each
    response = await client.post("/console/rules/test", data=_rule_form(csrf, enabled=""))
    assert response.status == 200, await response.text()
    page = await response.text()
    assert re.search(r'id="forecast-fired">15<', page)
    assert "活跃客户 × 15" in page and "manager-1 × 15" in page
    assert "测试客户01" in page and "有标签 VIP客户（" in page and "没有标签 沉默客户" in page  # examples, facts
    assert await _counts(client) == before  # nothing written

    draft = re.search(r'name="draft" value="([^"]+)"', page)
    assert draft
    saved = await client.post(
        "/console/rules/save",
        data={"csrf": csrf, "base_version": "1", "name": "VIP客户活跃", "draft": html.unescape(draft.group(1))},
        allow_redirects=False,
    )
    assert saved.status == 303 and saved.headers["Location"] == "/console/rules?done=saved&v=2"
    versions = await _versions(client)
    assert versions[0] == (2, "kebiao:operator", "rule VIP客户活跃")
    listed = await (await client.get("/console/rules?done=saved&v=2")).text()
    assert "已保存为版本 2" in listed
    rule = re.search(r"VIP客户活跃</a>\s*<span class=\"badge\">未启用", listed)
    assert rule, "the rule saved switched off"
    after = await _counts(client)
    assert after["tag_assignments"] == before["tag_assignments"] and after["outbox"] == before["outbox"]


async def test_new_rule_and_removal_go_through_a_version(client: TestClient) -> None:
    csrf = await sign_in(client)
    new = _rule_form(
        csrf,
        original="",
        name="询价跟进",
        description="",
        trigger="tag",
        trigger_on="询价客户",
        when="",
        then="- suggest: 企业客户",
    )
    response = await client.post("/console/rules/test", data=new)
    assert response.status == 200, await response.text()
    draft = re.search(r'name="draft" value="([^"]+)"', await response.text())
    assert draft
    document = json.loads(html.unescape(draft.group(1)))
    assert document["rules"][-1] == {
        "name": "询价跟进",
        "trigger": {"tag": ["询价客户"]},
        "then": [{"suggest": "企业客户"}],
    }
    removal = await client.post("/console/rules/remove", data={"csrf": csrf, "name": "投诉升级"})
    page = await removal.text()
    assert removal.status == 200 and "删除规则：投诉升级" in page
    draft = re.search(r'name="draft" value="([^"]+)"', page)
    assert draft and "投诉升级" not in html.unescape(draft.group(1))
    saved = await client.post(
        "/console/rules/save",
        data={"csrf": csrf, "base_version": "1", "name": "投诉升级", "draft": html.unescape(draft.group(1))},
        allow_redirects=False,
    )
    assert saved.status == 303
    assert "投诉升级" not in await (await client.get("/console/rules")).text()
    stale = await client.post(
        "/console/rules/save",
        data={"csrf": csrf, "base_version": "1", "name": "x", "draft": html.unescape(draft.group(1))},
    )
    assert stale.status == 409  # another version was saved since


async def _learned(client: TestClient) -> None:
    names = {"price": ["询价客户"], "repair": ["售后工单"], None: []}
    lines = [json.dumps({"text": t, "tags": names[k]}, ensure_ascii=False) for t, k in messages(120)]
    await import_history(client.app[LEARNING], lines, build_sample_taxonomy(), datetime.now(UTC))


async def test_keyword_candidates_and_one_click_add(client: TestClient) -> None:
    await _learned(client)
    csrf = await sign_in(client)
    response = await client.get("/console/keywords")
    assert response.status == 200
    page = await response.text()
    assert "售后工单" in page and "询价客户" in page and "支持度" in page
    forms = re.findall(
        r'name="dimension" value="([^"]+)">\s*<input type="hidden" name="tag" value="([^"]+)">\s*'
        r'<input type="hidden" name="word" value="([^"]+)">',
        page,
    )
    dimension, tag, word = next(f for f in forms if f[1] == "售后工单")
    before = await _counts(client)
    added = await client.post(
        "/console/keywords/add", data={"csrf": csrf, "dimension": dimension, "tag": tag, "word": word}
    )
    assert added.status == 200 and added.url.path == "/console/keywords"
    result = await added.text()
    assert f"已将“{word}”添加为“售后工单”的关键词，当前为版本 2" in result
    assert f'value="{word}"' not in result.split("售后工单", 1)[1].split("</section>", 1)[0]  # no longer a candidate
    versions = await _versions(client)
    assert versions[0][:2] == (2, "kebiao:operator") and word in versions[0][2]
    async with client.app[DATABASE].unit_of_work(read_only=True) as uow:
        current = await uow.taxonomies.current()
    assert current is not None
    assert word in next(t for t in current.taxonomy.iter_tags() if t.name == "售后工单").keywords
    again = await client.post(
        "/console/keywords/add", data={"csrf": csrf, "dimension": dimension, "tag": tag, "word": word}
    )
    again_text = await again.text()
    assert "已是" in again_text and len(await _versions(client)) == 2, again_text[again_text.find("<main") :]
    assert (await _counts(client))["taxonomy_versions"] == before["taxonomy_versions"] + 1
    pii = await client.post(
        "/console/keywords/add", data={"csrf": csrf, "dimension": dimension, "tag": tag, "word": "13812345678"}
    )
    assert pii.status == 400 and len(await _versions(client)) == 2


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/console/rules/test", {"name": "VIP客户活跃", "trigger": "daily", "then": "- add: 活跃客户"}),
        ("/console/rules/remove", {"name": "投诉升级"}),
        ("/console/rules/save", {"base_version": "1", "draft": "{}"}),
        ("/console/keywords/add", {"dimension": "stage", "tag": "售后工单", "word": "坏了"}),
    ],
)
async def test_change_without_csrf_is_refused(client: TestClient, path: str, data: dict[str, str]) -> None:
    await sign_in(client)
    before = await _counts(client)
    for given in (data, data | {"csrf": "forged"}):
        response = await client.post(path, data=given)
        assert response.status == 403 and "CSRF" in await response.text()
    assert await _counts(client) == before


def _signed_in_as(client: TestClient, user_id: str) -> str:
    """A session cookie for `user_id` minted with the app's key (as if they had signed in); its CSRF token."""
    from console import sessions

    services: Any = client.app[CONSOLE].services  # type: ignore[attr-defined]
    now = int(time.time())
    session = sessions.anonymous(now, 3600).signed_in_as(user_id, "wecom", "李坐席", now + 3600)
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({sessions.COOKIE: sessions.encode(session, services.secret)})
    return session.csrf


async def test_agent_is_refused(client: TestClient) -> None:
    await _learned(client)
    for path in ("/console/rules", "/console/rules/rule?name=VIP客户活跃", "/console/keywords"):
        _signed_in_as(client, "agent-1")  # a refusal ends the session: sign in again for each page
        response = await client.get(path)
        body = await response.text()
        assert response.status == 403 and "经理" in body
        assert "VIP客户活跃" not in body and "高危流失" not in body and "售后工单" not in body
    before = await _counts(client)
    csrf = _signed_in_as(client, "agent-1")
    response = await client.post(
        "/console/keywords/add", data={"csrf": csrf, "dimension": "stage", "tag": "售后工单", "word": "坏了"}
    )
    assert response.status == 403
    assert await _counts(client) == before


async def test_history_shows_the_rule_a_version_changed(client: TestClient) -> None:
    csrf = await sign_in(client)
    edited = _rule_form(csrf, when="all:\n  - has: VIP客户\n", priority="3", enabled="")
    response = await client.post("/console/rules/test", data=edited)
    assert response.status == 200, await response.text()
    draft = re.search(r'name="draft" value="([^"]+)"', await response.text())
    assert draft
    saved = await client.post(
        "/console/rules/save",
        data={"csrf": csrf, "base_version": "1", "name": "VIP客户活跃", "draft": html.unescape(draft.group(1))},
        allow_redirects=False,
    )
    assert saved.status == 303
    page = await (await client.get("/console/taxonomy/history")).text()
    newest = page.split('id="v1"')[0]  # version 2 and what it changed from version 1
    assert 'id="v2"' in newest and "变更 (1)" in newest and "规则" in newest
    cells = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", newest)
    assert cells == [
        ("条件", "持有标签 VIP客户 且 没有标签 沉默客户", "持有标签 VIP客户"),
        ("启用", "启用", "未启用"),
        ("优先级", "—", "3"),
    ]
    english = await client.get("/console/taxonomy/history", headers={"Accept-Language": "en"})
    text = (await english.text()).split('id="v1"')[0]
    assert "Changes (1)" in text and "<td>Priority</td><td>—</td><td>3</td>" in text
    assert "<td>Condition</td><td>holds VIP客户 and lacks 沉默客户</td><td>holds VIP客户</td>" in text
    # removing the other rule shows it removed, in words, in the next version
    removal = await client.post("/console/rules/remove", data={"csrf": csrf, "name": "投诉升级"})
    draft = re.search(r'name="draft" value="([^"]+)"', await removal.text())
    assert draft
    await client.post(
        "/console/rules/save",
        data={"csrf": csrf, "base_version": "2", "name": "投诉升级", "draft": html.unescape(draft.group(1))},
        allow_redirects=False,
    )
    page = (await (await client.get("/console/taxonomy/history")).text()).split('id="v2"')[0]
    assert re.search(r'diff-removed"><span class="badge">删除</span> <strong>投诉升级</strong>', page)
    assert "收到消息时 · 本条消息匹配 紧急工单 → 添加 投诉风险（未启用）" in page
