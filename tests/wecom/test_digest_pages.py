"""显示全部标签 on a WeCom expiry digest: every covered tag in whole-row markdown messages, page by page.

Signed, encrypted template_card_event callbacks through POST /wecom/callback into the real app (SQLite and
PostgreSQL), replies through the fake WeCom API; a 100-customer digest with long names full of `_ ( ) & #`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import DATABASE, TAXONOMY, create_app
from cards.present import alert_view_from_payload
from cards.text import escape
from cards.wecom import MARKDOWN_BYTES, alert_template_card, button_key, parse_button
from core import verbs
from core.tags.users import set_role
from core.types import Role
from storage.outbox import SqlAlertStore
from tests.alerts.long_digest import SeededDigest, seed_digest
from tests.wecom.callbacks import TAXONOMY_YAML, card_click_xml, settings_for
from tests.wecom.fake_api import FakeWeComApi
from tests.wecom.test_routes import post, settle

BOSS = "wangjingli"
AGENT = "xiaozhang"
RISK = """  - key: risk
    name: 风险与问题
    visibility: managers
    tags:
      - name: 高危流失
"""
WITH_RISK = TAXONOMY_YAML.replace("channels:", RISK + "channels:", 1)
ROW = re.compile(r"^> 【[高中低]】 (.+) · (VIP客户|高危流失) (\S+)$")


@pytest.fixture
async def client(
    aiohttp_client: Any, tmp_path: Path, database_url: str, fake_wecom: FakeWeComApi
) -> AsyncIterator[TestClient]:
    settings = settings_for(tmp_path, fake_wecom.api_base, database_url=database_url, taxonomy_yaml=WITH_RISK)
    client: TestClient = await aiohttp_client(create_app(settings))
    async with client.app[DATABASE].unit_of_work() as uow:
        await set_role(uow, BOSS, Role.MANAGER, (), datetime.now(UTC), display_name="王经理")
    yield client


async def _seed(client: TestClient, recipient: str, customers: int, hidden_every: int) -> SeededDigest:
    taxonomy = client.app[TAXONOMY].taxonomy
    return await seed_digest(
        client.app[DATABASE], taxonomy, recipient, "wecom", datetime.now(UTC), customers, hidden_every
    )


async def _delivered(client: TestClient, alert_id: int) -> dict[str, Any]:
    async with SqlAlertStore(client.app[DATABASE].engine).unit_of_work() as uow:
        row = await uow.outbox.get(alert_id)
    assert row is not None
    return alert_template_card(alert_view_from_payload(row), datetime.now(UTC), task_id=f"kebiao-alert-{alert_id}")


class Clicks:
    """Posts clicks with distinct create times (distinct events) and returns what each one sent."""

    def __init__(self, client: TestClient, fake: FakeWeComApi) -> None:
        self.client, self.fake, self.created = client, fake, 1732600000

    async def click(self, key: str, user: str, repeat: int = 1) -> list[dict[str, Any]]:
        before = len(self.fake.calls_to("message/send"))
        self.created += 1
        for _ in range(repeat):  # a retry repeats the very same callback
            assert (await post(self.client, card_click_xml(key, user=user, created=self.created)))[0] == 200
        await settle(self.client)
        return [c.body for c in self.fake.calls_to("message/send")[before:] if c.body]


def _rows(messages: list[dict[str, Any]]) -> list[str]:
    """'name · tag' of every digest row in the markdown messages (names as escaped for markdown)."""
    out = []
    for body in messages:
        if body["msgtype"] != "markdown":
            continue
        content = body["markdown"]["content"]
        assert len(content.encode()) <= MARKDOWN_BYTES
        for line in content.split("\n"):
            if line.startswith("> "):
                match = ROW.match(line)
                assert match is not None, f"row cut or malformed: {line!r}"
                out.append(f"{match.group(1)} · {match.group(2)}")
    return out


def _pager(messages: list[dict[str, Any]]) -> dict[str, str]:
    """The 上一页 / 下一页 buttons of the page card sent last: title → key."""
    card = messages[-1]
    assert card["msgtype"] == "template_card"
    return {b["text"]: b["key"] for b in card["template_card"]["button_list"]}


async def test_show_all_sends_every_row_page_by_page_without_stamping_the_card(
    client: TestClient, fake_wecom: FakeWeComApi
) -> None:
    seeded = await _seed(client, BOSS, customers=100, hidden_every=10)
    delivered = await _delivered(client, seeded.alert_id)
    keys = {b["text"]: b["key"] for b in delivered["button_list"]}
    assert keys["显示全部标签"] == button_key(verbs.ALERT_DIGEST_ALL, [seeded.alert_id])

    clicks = Clicks(client, fake_wecom)
    sent = await clicks.click(keys["显示全部标签"], BOSS, repeat=3)  # retried 3 times: answered once
    seen: list[str] = []
    for page in range(1, 7):
        assert sum(1 for b in sent if b["msgtype"] == "template_card") == 1, sent
        assert f"第 {page}/6 页" in sent[0]["markdown"]["content"]
        rows = _rows(sent)
        assert len(rows) == (20 if page < 6 else 10)
        seen += rows
        pager = _pager(sent)
        assert ("上一页" in pager) == (page > 1) and ("下一页" in pager) == (page < 6)
        if page < 6:
            assert parse_button(pager["下一页"])[1] == (seeded.alert_id, page + 1)
            assert "点下方卡片上的“下一页”查看第" in sent[-2]["markdown"]["content"]
            sent = await clicks.click(pager["下一页"], BOSS)
    expected = [escape(r) for r in seeded.visible + seeded.hidden]
    assert sorted(seen) == sorted(expected) and len(set(seen)) == 110
    assert fake_wecom.calls_to("message/update_template_card") == []  # a view, not a decision

    back = await clicks.click(_pager(sent)["上一页"], BOSS)
    assert "第 5/6 页" in back[0]["markdown"]["content"]


async def test_an_agents_digest_never_shows_managers_only_tags(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    seeded = await _seed(client, AGENT, customers=30, hidden_every=2)
    clicks = Clicks(client, fake_wecom)
    sent = await clicks.click(button_key(verbs.ALERT_DIGEST_ALL, [seeded.alert_id]), AGENT)
    seen = _rows(sent)
    sent = await clicks.click(_pager(sent)["下一页"], AGENT)
    seen += _rows(sent)
    assert sorted(seen) == sorted(escape(r) for r in seeded.visible)
    assert "高危流失" not in str(sent) and "第 2/2 页" in sent[0]["markdown"]["content"]


async def test_pages_out_of_range_forged_or_someone_elses_get_a_clear_answer(
    client: TestClient, fake_wecom: FakeWeComApi
) -> None:
    seeded = await _seed(client, BOSS, customers=25, hidden_every=100)
    clicks = Clicks(client, fake_wecom)
    cases = {
        f"alert.digest_all:{seeded.alert_id},3": "这份提醒共 2 页，没有第 3 页",
        f"alert.digest_all:{seeded.alert_id},0": "page must be 1 or more",
        f"alert.digest_all:{seeded.alert_id},{10**30}": "page must be at most",
        f"alert.digest_all:{seeded.alert_id},2,9": "page must be a number, got '2,9'",
        f"alert.digest_all:{seeded.alert_id + 99}": "does not exist",
    }
    for key, answer in cases.items():
        [reply] = await clicks.click(key, BOSS)
        assert reply["msgtype"] == "markdown" and answer in reply["markdown"]["content"], key
        assert "VIP客户" not in reply["markdown"]["content"]
    [refused] = await clicks.click(f"alert.digest_all:{seeded.alert_id},2", AGENT)
    assert "只有收到提醒的人才能查看全部标签" in refused["markdown"]["content"]
    assert "VIP客户" not in refused["markdown"]["content"]
    assert fake_wecom.calls_to("message/update_template_card") == []
