"""GET /admin/v1/learning/keywords on the real app: keyword candidates mined from stored decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aiohttp.test_utils import TestClient

from app import LEARNING
from core.learning.history import import_history
from tests.admin.conftest import AUTH
from tests.conftest import build_sample_taxonomy
from tests.learning.support import messages

PATH = "/admin/v1/learning/keywords"


async def test_keyword_candidates_per_tag(client: TestClient) -> None:
    names = {"price": ["询价客户"], "repair": ["售后工单"], None: []}
    lines = [json.dumps({"text": t, "tags": names[k]}, ensure_ascii=False) for t, k in messages(120)]
    await import_history(client.app[LEARNING], lines, build_sample_taxonomy(), datetime.now(UTC))

    response = await client.get(PATH, params={"tag": "售后工单", "limit": "3"}, headers=AUTH)
    assert response.status == 200
    body = await response.json()
    [group] = body["tags"]
    assert (group["dimension"], group["tag"]) == ("stage", "售后工单") and group["positives"] > 10
    assert len(group["candidates"]) == 3
    for candidate in group["candidates"]:
        assert candidate["support"] >= 3 and 0 < candidate["precision"] <= 1
        assert len(candidate["examples"]) == 2 and all(candidate["word"] in e for e in candidate["examples"])
        assert candidate["word"] not in ("退款", "维修")  # already keywords of the tag

    every = await (await client.get(PATH, headers=AUTH)).json()
    assert {g["tag"] for g in every["tags"] if g["candidates"]} == {"询价客户", "售后工单"}


async def test_bad_queries_are_4xx(client: TestClient) -> None:
    assert (await client.get(PATH)).status == 401
    unknown = await client.get(PATH, params={"tag": "没有这个"}, headers=AUTH)
    assert unknown.status == 400 and "没有这个" in (await unknown.json())["error"]
    assert (await client.get(PATH, params={"limit": "0"}, headers=AUTH)).status == 400
