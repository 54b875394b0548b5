"""WeCom cards show times in KEBIAO_TIMEZONE, through the real app and the fake WeCom API."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import create_app
from cards.wecom import button_key
from core import verbs
from tests.wecom.callbacks import card_click_xml, settings_for
from tests.wecom.fake_api import FakeWeComApi
from tests.wecom.test_alert_clicks import RAISED, _alert
from tests.wecom.test_routes import post, settle


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi) -> AsyncIterator[TestClient]:
    settings = dataclasses.replace(settings_for(tmp_path, fake_wecom.api_base), timezone="America/Los_Angeles")
    yield await aiohttp_client(create_app(settings))


async def test_the_acknowledged_alert_card_shows_the_raised_time_in_the_local_zone(
    client: TestClient, fake_wecom: FakeWeComApi
) -> None:
    alert_id = await _alert(client, "wangjingli")
    status, _ = await post(client, card_click_xml(button_key(verbs.ALERT_ACK, [alert_id]), user="wangjingli"))
    assert status == 200
    await settle(client)
    (update,) = fake_wecom.calls_to("message/update_template_card")
    card = json.dumps(update.body, ensure_ascii=False) if update.body else ""
    assert RAISED.isoformat() == "2025-03-01T01:00:00+00:00"
    assert "2025-02-28 17:00" in card and "2025-03-01 01:00" not in card, card
