"""WeCom: an agent's own tags on a contact (follow_user tags of type 2) become their personal tags in Kebiao."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import DATABASE, create_app
from core.types import Customer
from storage import tables as t
from tests.wecom.callbacks import contact_xml, settings_for, text_xml
from tests.wecom.fake_api import FakeWeComApi
from tests.wecom.test_routes import count, post, settle


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi) -> AsyncIterator[TestClient]:
    yield await aiohttp_client(create_app(settings_for(tmp_path, fake_wecom.api_base)))


def follow(userid: str, *tags: tuple[str, int]) -> dict[str, Any]:
    return {
        "userid": userid,
        "remark": "",
        "tags": [
            {"group_name": "", "tag_name": name, "type": kind} | ({"tag_id": f"et-{name}"} if kind == 1 else {})
            for name, kind in tags
        ],
    }


async def _customer(client: TestClient, external: str) -> Customer:
    async with client.app[DATABASE].unit_of_work() as uow:
        (customer,) = await uow.customers.find_exact(external)
    return customer


async def _personal(client: TestClient, customer_id: int, author: str) -> list[tuple[str, str]]:
    async with client.app[DATABASE].engine.connect() as conn:
        rows = await conn.execute(
            t.personal_tags.select()
            .where(t.personal_tags.c.customer_id == customer_id, t.personal_tags.c.author == author)
            .order_by(t.personal_tags.c.id)
        )
        return [(r.name, r.source) for r in rows]


async def test_add_and_edit_read_each_agents_own_tags(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    fake_wecom.add_contact("wmPERSONAL01", "钱多", ["zhangwei", "lisi"])
    fake_wecom.contacts["wmPERSONAL01"]["follow_user"] = [
        follow("zhangwei", ("重点客户", 1), ("周三拜访", 2), ("性格急躁", 2), ("规则", 3)),
        follow("lisi", ("喜欢喝茶", 2), ("13800138000", 2)),
    ]
    await post(client, contact_xml("add_external_contact", external="wmPERSONAL01", user="zhangwei", created=100))
    await settle(client)
    customer = await _customer(client, "wmPERSONAL01")
    assert await _personal(client, customer.id, "zhangwei") == [("周三拜访", "wecom"), ("性格急躁", "wecom")]
    assert await _personal(client, customer.id, "lisi") == [("喜欢喝茶", "wecom")]  # the phone number is dropped
    assert await count(client, t.tag_assignments) == 0  # never enterprise tags
    # The agent adds one in chat, then edits the contact's WeCom tags: WeCom's set is replaced, the typed one kept.
    await post(client, text_xml("我的标签 钱多 +爱打高尔夫", msg_id="9900001", user="zhangwei"))
    await settle(client)
    fake_wecom.contacts["wmPERSONAL01"]["follow_user"][0] = follow("zhangwei", ("周三拜访", 2))
    await post(client, contact_xml("edit_external_contact", external="wmPERSONAL01", user="zhangwei", created=200))
    await settle(client)
    assert await _personal(client, customer.id, "zhangwei") == [("周三拜访", "wecom"), ("爱打高尔夫", "manual")]
    sent = [c.body for c in fake_wecom.calls_to("message/send") if c.body]
    assert any("爱打高尔夫" in str(b) and "我的标签" in str(b) for b in sent)


async def test_contact_details_without_follow_users_change_nothing(
    client: TestClient, fake_wecom: FakeWeComApi
) -> None:
    fake_wecom.add_contact("wmPERSONAL02", "孙无", ["zhangwei"])
    fake_wecom.contacts["wmPERSONAL02"]["follow_user"] = "not a list"
    await post(client, contact_xml("add_external_contact", external="wmPERSONAL02", user="zhangwei"))
    await settle(client)
    customer = await _customer(client, "wmPERSONAL02")
    assert customer.name == "孙无"
    assert await count(client, t.personal_tags) == 0
