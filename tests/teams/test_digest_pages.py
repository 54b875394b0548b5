"""A digest opened in full pages through every tag it covers: 第 n/m 页 with 上一页 / 下一页 on alert.digest_all.

Runs through the real create_app and POST /api/messages (adaptiveCard/action) with the fake Bot Connector,
on SQLite and PostgreSQL, with a 100-customer digest whose names are long and full of `_ ( ) & #`.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import DATABASE, TAXONOMY, create_app
from cards.adaptive import MAX_CARD_BYTES
from cards.alert import build_alert_card
from cards.present import alert_view_from_payload
from cards.structure import problems
from config import Settings
from core.tags.users import set_role
from core.types import Role
from storage.outbox import SqlAlertStore
from tests.alerts.long_digest import SeededDigest, seed_digest
from tests.teams.fake_connector import FakeConnector
from tests.teams.test_bot_flow import AGENT, MANAGER, actions, card_action, post, texts

CARD = "application/vnd.microsoft.card.adaptive"
BOSS = {"id": "29:manager", "name": "张经理", "aadObjectId": MANAGER}
PAGE = re.compile(r"第 (\d+)/(\d+) 页")


@pytest.fixture
async def app(
    aiohttp_client: Any, database_url: str, connector: tuple[FakeConnector, str]
) -> AsyncIterator[tuple[TestClient, str]]:
    client: TestClient = await aiohttp_client(create_app(Settings(database_url=database_url, scheduler_enabled=False)))
    async with client.app[DATABASE].unit_of_work() as uow:
        await set_role(uow, MANAGER, Role.MANAGER, (), datetime.now(UTC), display_name="张经理")
    yield client, connector[1]


async def _seed(client: TestClient, recipient: str, customers: int = 100, hidden_every: int = 10) -> SeededDigest:
    taxonomy = client.app[TAXONOMY].taxonomy
    return await seed_digest(
        client.app[DATABASE], taxonomy, recipient, "teams", datetime.now(UTC), customers, hidden_every
    )


async def _delivered(client: TestClient, alert_id: int) -> Any:
    """The digest card as Teams delivers it (built from the stored outbox row)."""
    async with SqlAlertStore(client.app[DATABASE].engine).unit_of_work() as uow:
        row = await uow.outbox.get(alert_id)
    assert row is not None
    return build_alert_card(alert_view_from_payload(row), datetime.now(UTC))


def _rows(card: Any) -> list[str]:
    """'name · tag' of every digest row on a card (each row has its own 查看 button)."""
    out = []
    for column_set in _column_sets(card):
        if actions(column_set, "customer.show"):
            line = texts(column_set["columns"][0])
            out.append(line.split("】", 1)[1].rsplit(" ", 1)[0])
    return out


def _column_sets(node: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(node, dict):
        if node.get("type") == "ColumnSet" and len(node.get("columns", ())) == 2:
            found.append(node)
        for value in node.values():
            found.extend(_column_sets(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_column_sets(value))
    return found


async def _open(client: TestClient, url: str, data: dict[str, Any], activity: str, who: dict[str, Any] | None) -> Any:
    extra = {"from": who} if who else {}
    status, body = await post(client, card_action(url, "alert.digest_all", data, activity, **extra))
    assert status == 200 and body["type"] == CARD
    return body["value"]


async def test_every_tag_of_a_100_row_digest_is_reachable_page_by_page(app: Any) -> None:
    client, url = app
    seeded = await _seed(client, MANAGER)
    [show_all] = actions(await _delivered(client, seeded.alert_id), "alert.digest_all")

    card = await _open(client, url, show_all["data"], "p-1", BOSS)
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        assert not problems(card) and len(json.dumps(card, ensure_ascii=False).encode()) <= MAX_CARD_BYTES
        shown = texts(card)
        assert PAGE.search(shown) is not None and PAGE.search(shown).groups() == (str(pages), "6")  # type: ignore[union-attr]
        assert "另有" not in shown  # nothing on a page goes unlisted
        seen.extend(_rows(card))
        assert bool(actions(card, "alert.digest_all")) and len(actions(card, "alert.ack")) == 1
        previous = [a for a in actions(card, "alert.digest_all") if a["title"] == "上一页"]
        following = [a for a in actions(card, "alert.digest_all") if a["title"] == "下一页"]
        assert bool(previous) == (pages > 1)
        if previous:
            assert previous[0]["data"] == {"alert_id": seeded.alert_id, "page": pages - 1}
        if not following:
            break
        card = await _open(client, url, following[0]["data"], f"p-{pages + 1}", BOSS)
    assert pages == 6  # 100 VIP客户 + 10 高危流失 rows, 20 a page (the manager sees both)
    assert sorted(seen) == sorted(seeded.visible + seeded.hidden) and len(set(seen)) == 110
    assert seen[0] == seeded.visible[0]  # soonest first
    assert "(China)_Holdings & Partners" in seen[0]  # names verbatim in TextRuns

    # Going back gives the same page again.
    back = await _open(client, url, {"alert_id": seeded.alert_id, "page": 5}, "p-back", BOSS)
    assert "第 5/6 页" in texts(back)


async def test_an_agents_pages_leave_out_managers_only_tags(app: Any) -> None:
    client, url = app
    seeded = await _seed(client, AGENT, customers=45, hidden_every=3)
    card = await _open(client, url, {"alert_id": seeded.alert_id}, "a-1", None)
    seen = _rows(card)
    assert "第 1/3 页" in texts(card)  # 45 visible rows; the 15 managers-only ones neither listed nor counted
    for page in (2, 3):
        seen += _rows(await _open(client, url, {"alert_id": seeded.alert_id, "page": page}, f"a-{page}", None))
    assert sorted(seen) == sorted(seeded.visible) and "高危流失" not in " ".join(seen)


@pytest.mark.parametrize(
    ("page", "answer"),
    [
        (3, "没有第 3 页"),
        (0, "page must be 1 or more"),
        ("二", "page must be a number"),
        (10**30, "page must be at most"),
        (True, "page must be a number"),
    ],
)
async def test_a_page_out_of_range_or_forged_gets_a_clear_answer(app: Any, page: Any, answer: str) -> None:
    client, url = app
    seeded = await _seed(client, MANAGER, customers=30, hidden_every=100)
    card = await _open(client, url, {"alert_id": seeded.alert_id, "page": page}, "f-1", BOSS)
    assert answer in texts(card) and "VIP客户" not in texts(card)


async def test_someone_else_cannot_page_through_a_digest(app: Any) -> None:
    client, url = app
    seeded = await _seed(client, MANAGER, customers=30, hidden_every=100)
    card = await _open(client, url, {"alert_id": seeded.alert_id, "page": 2}, "s-1", None)  # 王丽, not the recipient
    assert "只有收到提醒的人" in texts(card) and "VIP客户" not in texts(card)
