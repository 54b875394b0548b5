"""A WeCom command naming an ambiguous customer: every candidate in full, then 选择 n runs the command.

Signed, encrypted callbacks through POST /wecom/callback into the real app (SQLite and PostgreSQL), replies
through the fake WeCom API; names and CRM ids carry `_ ( ) & #`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import DATABASE, create_app
from cards.wecom import KEY_BYTES, MARKDOWN_BYTES, parse_button
from core import verbs
from core.records import CustomerDraft
from tests.wecom.callbacks import card_click_xml, settings_for, text_xml
from tests.wecom.fake_api import FakeWeComApi
from tests.wecom.test_routes import post, settle

QUERY = "Bosch (China) R&D #2"
CANDIDATES = (
    (
        "Bosch (China) R&D #2 华东研发中心_上海 Very Long Name Holdings International Limited",
        "博世中国",
        "华东",
        "SF_0012-A",
    ),
    ("Bosch (China) R&D #2 华南", "博世(华南)&合作伙伴 #1", "华南", "SF_0012-B"),
    ("Bosch (China) R&D #2 华北 <b>x</b> `tick`", "", "华北", ""),
)


@pytest.fixture
async def client(
    aiohttp_client: Any, tmp_path: Path, database_url: str, fake_wecom: FakeWeComApi
) -> AsyncIterator[TestClient]:
    settings = settings_for(tmp_path, fake_wecom.api_base, database_url=database_url)
    client: TestClient = await aiohttp_client(create_app(settings))
    async with client.app[DATABASE].unit_of_work() as uow:
        for name, company, region, crm in CANDIDATES:
            await uow.customers.add(
                CustomerDraft(name=name, company=company, region=region, crm_id=crm), datetime.now(UTC)
            )
    yield client


def _sent(fake: FakeWeComApi) -> list[dict[str, Any]]:
    return [c.body for c in fake.calls_to("message/send") if c.body]


async def _held(client: TestClient) -> dict[str, list[str]]:
    out = {}
    async with client.app[DATABASE].unit_of_work() as uow:
        for name, *_ in CANDIDATES:
            [customer] = await uow.customers.find_exact(name)
            out[name] = [a.tag for a in await uow.assignments.active_for(customer.id)]
    return out


async def test_candidates_are_listed_in_full_and_choosing_runs_the_command_once(
    client: TestClient, fake_wecom: FakeWeComApi
) -> None:
    for _ in range(3):  # WeCom retries a callback it got no answer to within 5 s: one answer in all
        assert (await post(client, text_xml(f"tag {QUERY} +VIP客户", msg_id="9100001")))[0] == 200
    await settle(client)
    sent = _sent(fake_wecom)
    assert [b["msgtype"] for b in sent] == ["markdown", "template_card"]
    listing = sent[0]["markdown"]["content"]
    assert len(listing.encode()) <= MARKDOWN_BYTES
    for name, company, region, crm in CANDIDATES[:2]:
        assert f"`{name}`" in listing and f"`{company}`" in listing and f"`{region}`" in listing
        assert f"CRM 编号 `{crm}`" in listing
    # Only what would end the code span or open a tag is swapped; the rest stays as typed.
    assert "`Bosch (China) R&D #2 华北 ＜b＞x＜/b＞ ｀tick｀`" in listing
    assert "选择 n" in listing

    card = sent[1]["template_card"]
    assert card["card_type"] == "button_interaction"
    assert [b["text"] for b in card["button_list"]] == ["选择 1", "选择 2", "选择 3"]
    assert all(len(b["key"].encode()) <= KEY_BYTES for b in card["button_list"])
    numbers = dict(re.findall(r"\*\*(\d)\.\*\* `([^`]+)`", listing))
    second = next(n for n, name in numbers.items() if name == CANDIDATES[1][0])
    key = card["button_list"][int(second) - 1]["key"]
    verb, ids, extras = parse_button(key)
    assert verb == verbs.CUSTOMER_CHOOSE and len(ids) == 1 and extras == {"add": "VIP客户", "verb": "tag"}

    for _ in range(3):  # the click retried: tagged once, card stamped once, one reply
        assert (await post(client, card_click_xml(key, task_id=card["task_id"])))[0] == 200
    await settle(client)
    assert await _held(client) == {CANDIDATES[0][0]: [], CANDIDATES[1][0]: ["VIP客户"], CANDIDATES[2][0]: []}
    (update,) = fake_wecom.calls_to("message/update_template_card")
    assert update.body is not None and update.body["button"] == {"replace_name": "已处理"}
    [reply] = _sent(fake_wecom)[2:]
    assert reply["msgtype"] == "markdown" and "VIP客户" in reply["markdown"]["content"]


async def test_a_command_too_long_for_a_button_gets_the_list_and_the_command_to_send_again(
    client: TestClient, fake_wecom: FakeWeComApi
) -> None:
    tags = " ".join(f"+很长很长的标签名称第{n}个" for n in range(40))
    await post(client, text_xml(f"tag {QUERY} {tags}", msg_id="9100002"))
    await settle(client)
    sent = _sent(fake_wecom)
    assert sent and all(b["msgtype"] == "markdown" for b in sent)  # no card: its keys could not hold the command
    text = "\n".join(b["markdown"]["content"] for b in sent)
    assert all(len(b["markdown"]["content"].encode()) <= MARKDOWN_BYTES for b in sent)
    assert "CRM 编号 `SF_0012-B`" in text and "请重新发送命令" in text
    # The command is too long to show whole: the verb and a CRM id to copy, the tags "as before" (never cut).
    assert re.search(r"`tag SF_0012-[AB]` （后面照原样写上要加、减的标签）", text) and "第39个" not in text


async def test_a_forged_choice_key_changes_nothing(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    await post(client, card_click_xml("customer.choose:1~!!notbase64", created=5))
    await post(client, card_click_xml("customer.choose:1~eyJ2ZXJiIjoxfQ", created=6))  # {"verb":1}
    await settle(client)
    assert await _held(client) == {name: [] for name, *_ in CANDIDATES}
    assert _sent(fake_wecom) == [] and fake_wecom.calls_to("message/update_template_card") == []
