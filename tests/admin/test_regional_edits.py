"""A regional manager's taxonomy edits through the admin API: their region's part only, 403 otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp.test_utils import TestClient

from app import DATABASE
from core.tags.users import set_role
from core.types import Role
from tests.admin.conftest import AUTH
from tests.tagging.test_regions import REGIONAL

V1 = "/admin/v1"
YAML = {**AUTH, "Content-Type": "application/yaml"}


async def test_regional_manager_changes_their_region_and_is_refused_elsewhere(client: TestClient) -> None:
    async with client.app[DATABASE].unit_of_work() as uow:
        await set_role(uow, "north-mgr", Role.MANAGER, ("华北",), datetime.now(UTC))
    response = await client.put(f"{V1}/taxonomy?actor=cli-admin", data=REGIONAL.encode(), headers=YAML)
    assert response.status == 201, await response.text()
    first = (await response.json())["version"]
    north_only = REGIONAL.replace("keywords: [保供]", "keywords: [保供, 供暖保障]")
    response = await client.put(f"{V1}/taxonomy?actor=north-mgr", data=north_only.encode(), headers=YAML)
    assert response.status == 201, await response.text()
    company_wide = north_only.replace("keywords: [报价]", "keywords: [报价, 价格]")
    response = await client.put(f"{V1}/taxonomy?actor=north-mgr", data=company_wide.encode(), headers=YAML)
    assert response.status == 403
    body = await response.json()
    assert "you may change only dimensions and tags scoped to 华北" in body["error"]
    assert "tag 询价客户 in need (scope: all regions)" in body["error"]
    response = await client.post(f"{V1}/taxonomy/rollback", json={"version": 1, "actor": "north-mgr"}, headers=AUTH)
    assert response.status == 403  # rolling back to the sample taxonomy would drop other regions' tags
    current = await (await client.get(f"{V1}/taxonomy", headers=AUTH)).json()
    assert current["version"] == first + 1  # only the north manager's own change was stored
