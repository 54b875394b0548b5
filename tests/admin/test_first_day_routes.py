"""Admin API answers a first day needs: an identical taxonomy is no change, user ids must have a real shape."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.admin.conftest import AUTH

V1 = "/admin/v1"
YAML = {**AUTH, "Content-Type": "application/yaml"}


async def test_putting_the_taxonomy_in_force_again_stores_no_version(client: TestClient) -> None:
    current = await (await client.get(f"{V1}/taxonomy", headers=AUTH)).json()
    same = await client.put(f"{V1}/taxonomy", json=current["taxonomy"], headers=AUTH)
    assert same.status == 200, await same.text()
    body = await same.json()
    assert body["changed"] is False and body["version"] == current["version"] and body["in_force"] is True
    history = await (await client.get(f"{V1}/taxonomy/history", headers=AUTH)).json()
    assert [v["version"] for v in history["versions"]] == [current["version"]]
    edited = dict(current["taxonomy"], dimensions=current["taxonomy"]["dimensions"][:-1])
    changed = await client.put(f"{V1}/taxonomy", json=edited, headers=AUTH)
    assert changed.status == 201 and (await changed.json())["changed"] is True
    back = await client.post(f"{V1}/taxonomy/rollback", json={"version": current["version"]}, headers=AUTH)
    assert back.status == 201 and (await back.json())["version"] == current["version"] + 2
    again = await client.post(f"{V1}/taxonomy/rollback", json={"version": current["version"]}, headers=AUTH)
    assert again.status == 200 and (await again.json())["changed"] is False


async def test_taxonomy_problems_carry_a_path_with_names(client: TestClient) -> None:
    body = (
        "version: 1\ndimensions:\n  - key: risk\n    name: 风险\n    tags:\n"
        "      - name: 高危流失\n        keywords: [13812345678]\n"
    )
    response = await client.put(f"{V1}/taxonomy", data=body.encode(), headers=YAML)
    assert response.status == 400
    [problem] = (await response.json())["problems"]
    assert problem["path"] == "dimensions[0].tags[0].keywords[0]"
    assert problem["where"] == "dimensions[0](risk).tags[0](高危流失).keywords[0]"
    assert "personal data" in problem["reason"]


@pytest.mark.parametrize("user_id", ["<aad-object-id-or-wecom-userid>", "张伟", "a b"])
async def test_a_user_id_of_the_wrong_shape_is_400(client: TestClient, user_id: str) -> None:
    response = await client.put(f"{V1}/users/{user_id}", json={"role": "manager"}, headers=AUTH)
    assert response.status == 400
    assert "WeCom userid" in (await response.json())["error"]


async def test_a_guid_user_id_is_accepted(client: TestClient) -> None:
    user = "0b6f5a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    response = await client.put(f"{V1}/users/{user}", json={"role": "manager", "regions": ["华东"]}, headers=AUTH)
    assert response.status == 200 and (await response.json())["id"] == user
