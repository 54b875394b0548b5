"""Cards show dates in KEBIAO_TIMEZONE, through the real create_app and the fake Bot Connector."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from app import DATABASE, create_app
from cards.help import build_help_card
from config import Settings
from core.records import CustomerDraft
from tests.teams.fake_connector import FakeConnector
from tests.teams.test_bot_flow import actions, card_action, cards, link_channel, message, post, texts

ZONE = "America/Los_Angeles"  # 15 or 16 hours from Asia/Shanghai and 7 or 8 from UTC: no time is shared


@pytest.fixture
async def kebiao(
    aiohttp_client: Any, tmp_path: Path, connector: tuple[FakeConnector, str]
) -> AsyncIterator[tuple[TestClient, FakeConnector, str]]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'kebiao.db'}", scheduler_enabled=False, timezone=ZONE
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    async with client.app[DATABASE].unit_of_work() as uow:
        await uow.customers.add(CustomerDraft(name="ABC公司", company="ABC贸易", region="华东"), datetime.now(UTC))
    fake, url = connector
    yield client, fake, url


def _minutes(start: datetime, end: datetime, zone: ZoneInfo) -> set[str]:
    """Every `YYYY-MM-DD HH:MM` the local clock shows between start and end."""
    shown, moment = set(), start.replace(second=0, microsecond=0)
    while moment <= end:
        shown.add(f"{moment.astimezone(zone):%Y-%m-%d %H:%M}")
        moment += timedelta(minutes=1)
    return shown


async def test_the_accepted_line_shows_the_local_time(kebiao: Any) -> None:
    client, fake, url = kebiao
    link = await link_channel(client, url)
    assert (await post(client, dict(link, text="<at>客标</at> 麻烦发一下报价单", id="msg-1")))[0] == 200
    [accept] = actions(cards(fake)[1], "suggestion.accept")
    before = datetime.now(UTC)
    status, answer = await post(client, card_action(url, "suggestion.accept", accept["data"], "click-1"))
    after = datetime.now(UTC)
    assert status == 200
    shown = re.search(r"已接受 · 王丽 · (\d{4}-\d\d-\d\d \d\d:\d\d)", texts(answer["value"]))
    assert shown is not None, texts(answer["value"])
    assert shown.group(1) in _minutes(before, after, ZoneInfo(ZONE))
    assert shown.group(1) not in _minutes(before, after, ZoneInfo("UTC"))


async def test_a_far_expiry_is_left_off_the_card(kebiao: Any) -> None:
    client, fake, url = kebiao
    before = datetime.now(UTC)
    assert (await post(client, message(url, "tag ABC公司 +询价客户", "m-1")))[0] == 200
    after = datetime.now(UTC)
    content = texts(cards(fake)[-1])
    # 询价客户 lasts 90 days: too far out to matter at a glance, so the card shows no expiry for it at all
    days = {f"{(moment + timedelta(days=90)).astimezone(ZoneInfo(ZONE)):%Y-%m-%d}" for moment in (before, after)}
    assert "🔵 询价客户" in content and not any(day in content for day in days), content


@pytest.mark.parametrize(
    ("lang", "needle"), [("zh", "在群聊和频道里先 @Kebiao"), ("en", "address the bot with @Kebiao")]
)
def test_the_help_card_says_to_mention_the_bot_in_group_chats(lang: Any, needle: str) -> None:
    card = build_help_card([("help", "show this help", "显示帮助")], lang)
    assert needle in texts(card)
