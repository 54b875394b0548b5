"""Regional tags and tag icons through POST /api/messages (real app, botbuilder adapter, fake connector)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import DATABASE, create_app
from config import Settings
from core.records import CustomerDraft
from tests.tagging.test_regions import REGIONAL
from tests.teams.fake_connector import FakeConnector
from tests.teams.test_bot_flow import cards, message, post, texts


@pytest.fixture
async def regional(
    aiohttp_client: Any, tmp_path: Path, connector: tuple[FakeConnector, str]
) -> AsyncIterator[tuple[TestClient, FakeConnector, str]]:
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(REGIONAL, encoding="utf-8")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'kebiao.db'}",
        taxonomy_path=str(taxonomy),
        scheduler_enabled=False,
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    async with client.app[DATABASE].unit_of_work() as uow:
        now = datetime.now(UTC)
        await uow.customers.add(CustomerDraft(name="ABC公司", region="华东"), now)
        await uow.customers.add(CustomerDraft(name="北京暖通", region="华北"), now)
    fake, url = connector
    yield client, fake, url


async def test_a_regional_tag_is_refused_for_another_region_in_the_cards_language(regional: Any) -> None:
    client, fake, url = regional
    status, _ = await post(client, message(url, "tag ABC公司 +采暖设备意向", "r-1"))
    assert status == 200
    refused = texts(cards(fake)[-1])
    assert "只用于华北的客户" in refused and "属于华东" in refused
    await post(client, message(url, "tag 北京暖通 +采暖设备意向 +询价客户", "r-2"))
    shown = texts(cards(fake)[-1])
    assert "🔥 采暖设备意向" in shown and "💰 询价客户" in shown  # the icon stands before the name


async def test_regional_keywords_suggest_only_for_customers_of_the_region(regional: Any) -> None:
    client, fake, url = regional
    await post(client, message(url, "link ABC公司", "s-0"))  # this 1:1 chat is now linked to ABC公司 (华东)
    await post(client, message(url, "想了解地暖的报价", "s-1"))
    suggested = texts(cards(fake)[-1])
    assert "询价客户" in suggested and "地暖" not in suggested.replace("想了解地暖的报价", "")
    await post(client, message(url, "link 北京暖通", "s-2"))  # 华北: the regional tag is suggested too
    await post(client, message(url, "想了解地暖的报价", "s-3"))
    assert "地暖" in texts(cards(fake)[-1]).replace("想了解地暖的报价", "")
