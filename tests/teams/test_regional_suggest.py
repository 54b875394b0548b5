"""Regions in the dry runs: the chat `suggest` command and the message action's pre-selected tags (both databases)."""

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
from core.tags.users import set_role
from core.types import Role
from tests.tagging.test_regions import REGIONAL
from tests.teams.conftest import load_payload
from tests.teams.fake_connector import FakeConnector
from tests.teams.test_bot_flow import cards, message, post, texts

TEXT = "想了解地暖的报价"  # 地暖 is a 华北-only tag, 报价 (询价客户) is company-wide
AGENT_AAD = "6c1b5c2e-1f0a-4c55-9d55-3a5c2f1e0a11"  # the sender of the recorded payloads


@pytest.fixture
async def regional(
    aiohttp_client: Any, tmp_path: Path, connector: tuple[FakeConnector, str], database_url: str
) -> AsyncIterator[tuple[TestClient, FakeConnector, str]]:
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(REGIONAL, encoding="utf-8")
    settings = Settings(database_url=database_url, taxonomy_path=str(taxonomy), scheduler_enabled=False)
    client: TestClient = await aiohttp_client(create_app(settings))
    async with client.app[DATABASE].unit_of_work() as uow:
        now = datetime.now(UTC)
        await uow.customers.add(CustomerDraft(name="ABC公司", region="华东"), now)
        await uow.customers.add(CustomerDraft(name="北京暖通", region="华北"), now)
    fake, url = connector
    yield client, fake, url


def _suggested(card: dict[str, Any]) -> str:
    """The card's text without the echoed message."""
    return texts(card).replace(TEXT, "")


async def test_suggest_is_for_the_linked_customers_region(regional: Any) -> None:
    client, fake, url = regional
    await post(client, message(url, f"suggest {TEXT}", "d-0"))
    everything = _suggested(cards(fake)[-1])  # no customer, no regions of one's own: every region
    assert "询价客户" in everything and "地暖" in everything
    await post(client, message(url, "link ABC公司", "d-1"))
    await post(client, message(url, f"suggest {TEXT}", "d-2"))
    east = _suggested(cards(fake)[-1])
    assert "询价客户" in east and "地暖" not in east and "采暖" not in east
    await post(client, message(url, "link 北京暖通", "d-3"))
    await post(client, message(url, f"suggest {TEXT}", "d-4"))
    north = _suggested(cards(fake)[-1])
    assert "询价客户" in north and "地暖" in north


async def test_suggest_in_an_unlinked_chat_is_for_a_regional_managers_regions(regional: Any) -> None:
    client, fake, url = regional
    async with client.app[DATABASE].unit_of_work() as uow:
        await set_role(uow, AGENT_AAD, Role.MANAGER, ("华东", "华南"), datetime.now(UTC))
    await post(client, message(url, f"suggest {TEXT}", "m-1"))
    shown = _suggested(cards(fake)[-1])
    assert "询价客户" in shown and "地暖" not in shown


def _fetch(url: str, conversation_id: str, activity_id: str) -> dict[str, Any]:
    fetch = load_payload("compose_extension_fetch_task", url)
    fetch["id"] = activity_id
    fetch["value"]["messagePayload"]["body"]["content"] = f"<p>{TEXT}</p>"
    fetch["conversation"]["id"] = conversation_id
    return fetch


def _form_values(body: dict[str, Any]) -> tuple[str, str]:
    """(pre-selected customer id, pre-selected tags) of the tag form."""
    form = body["task"]["value"]["card"]["content"]
    by_id = {element.get("id"): element for element in form["body"]}
    return by_id["customer"]["value"], by_id["tags"]["value"]


async def test_the_message_action_preselects_only_tags_the_preselected_customer_may_hold(regional: Any) -> None:
    client, _, url = regional
    async with client.app[DATABASE].unit_of_work(read_only=True) as uow:
        (east,) = await uow.customers.find_exact("ABC公司")
        (north,) = await uow.customers.find_exact("北京暖通")
    channel = load_payload("channel_message_mention", url)
    conversation = channel["conversation"]["id"].split(";")[0]
    status, body = await post(client, _fetch(url, conversation, "fetch-0"))
    assert status == 200
    customer, tags = _form_values(body)  # nothing linked: the first customer by name is pre-selected
    first = east if customer == str(east.id) else north
    assert ("地暖" in tags) == (first.region == "华北") and "询价客户" in tags
    for target, name in ((north, "北京暖通"), (east, "ABC公司")):
        channel.update(text=f"<at>客标</at> 绑定 {name}", id=f"link-{target.id}")
        assert (await post(client, channel))[0] == 200
        status, body = await post(client, _fetch(url, conversation, f"fetch-{target.id}"))
        customer, tags = _form_values(body)
        assert customer == str(target.id)
        assert set(tags.split(",")) == ({"询价客户", "地暖"} if target is north else {"询价客户"})
