"""WeCom contact added / deleted through POST /wecom/callback become customer events rules can count."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from app import DATABASE, create_app
from storage import tables as t
from tests.wecom.callbacks import contact_xml, settings_for
from tests.wecom.fake_api import FakeWeComApi, fake_wecom
from tests.wecom.test_routes import post, settle

__all__ = ["fake_wecom"]


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi) -> AsyncIterator[TestClient]:
    yield await aiohttp_client(create_app(settings_for(tmp_path, fake_wecom.api_base)))


async def test_contact_added_and_deleted_are_recorded_once(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    fake_wecom.add_contact("wmRULE000001", "钱七", ["wangwu"])
    await post(client, contact_xml("add_external_contact", external="wmRULE000001", user="wangwu", created=100))
    await settle(client)
    await post(client, contact_xml("del_follow_user", external="wmRULE000001", user="wangwu", created=200))
    await settle(client)
    await post(client, contact_xml("del_follow_user", external="wmRULE000001", user="wangwu", created=200))  # retry
    await settle(client)
    async with client.app[DATABASE].engine.connect() as conn:
        rows = (await conn.execute(select(t.customer_events.c.kind, t.customer_events.c.properties))).all()
    assert sorted(kind for kind, _ in rows) == ["wecom_contact_added", "wecom_contact_deleted"]
    assert all(props == {"user": "wangwu"} for _, props in rows)
