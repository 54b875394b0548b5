"""The admin API through the real create_app: auth, every endpoint's happy path and its refusals."""

from __future__ import annotations

import io
import json
from pathlib import Path

import openpyxl
import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient

from app import DATABASE, MATCHERS, TAXONOMY, create_app
from core.tags import search
from tests.admin.conftest import AUTH, TOKEN, ClientFactory, admin_settings

V1 = "/admin/v1"

EXPO_TAXONOMY = """
version: 1
dimensions:
  - key: stage
    name: 需求阶段
    tags:
      - name: 展会线索
        keywords: [展会, 展位]
      - name: 询价客户
        keywords: [报价, 询价]
"""

CUSTOMERS_CSV = (
    "name,company,owner,region,crm_id,tags\n"
    "杭州云帆科技,云帆,zhangsan,华东,CRM-001,VIP客户;询价客户\n"
    "成都麦田教育,麦田,lisi,西南,CRM-002,活跃客户\n"
)


def _suggested(app: web.Application, text: str) -> list[str]:
    matcher = app[MATCHERS].current
    assert matcher is not None
    return [s.tag for s in matcher.suggest(text)]


async def _import(client: TestClient, csv_text: str = CUSTOMERS_CSV, dry_run: bool = False) -> dict:
    form = FormData()
    form.add_field("file", csv_text.encode("utf-8"), filename="customers.csv", content_type="text/csv")
    url = f"{V1}/customers/import" + ("?dry_run=1" if dry_run else "")
    response = await client.post(url, data=form, headers=AUTH)
    assert response.status == 200, await response.text()
    return await response.json()


async def _customer_id(client: TestClient, name: str) -> int:
    response = await client.get(f"{V1}/customers", params={"q": name}, headers=AUTH)
    body = await response.json()
    assert body["customer"] is not None, body
    return int(body["customer"]["id"])


# ---------------------------------------------------------------- auth


async def test_admin_api_is_absent_without_a_token(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(admin_settings(tmp_path, token=None)))
    for path in ("/taxonomy", "/reports/tags", "/customers?q=x"):
        assert (await client.get(V1 + path, headers=AUTH)).status == 404


async def test_missing_wrong_or_malformed_token_is_401(client: TestClient) -> None:
    cases = [
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {TOKEN}x"},
    ]
    for headers in cases:
        response = await client.get(f"{V1}/taxonomy", headers=headers)
        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.json()
        assert body["error"] and TOKEN not in json.dumps(body, ensure_ascii=False)
    # a write without the token changes nothing
    response = await client.put(
        f"{V1}/taxonomy", data=EXPO_TAXONOMY.encode(), headers={"Content-Type": "application/yaml"}
    )
    assert response.status == 401
    assert client.app[TAXONOMY].version.version == 1


async def test_token_is_never_logged(client: TestClient, caplog) -> None:
    caplog.set_level("DEBUG")
    await client.get(f"{V1}/taxonomy", headers=AUTH)
    await client.get(f"{V1}/taxonomy", headers={"Authorization": "Bearer 猜错的令牌"})
    assert TOKEN not in caplog.text and "猜错的令牌" not in caplog.text


# ---------------------------------------------------------------- taxonomy


async def test_get_taxonomy_returns_the_file_form_and_version(client: TestClient) -> None:
    response = await client.get(f"{V1}/taxonomy", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["version"] == 1
    keys = [d["key"] for d in body["taxonomy"]["dimensions"]]
    assert keys == ["basic", "value", "behavior", "stage", "risk"]
    stage = body["taxonomy"]["dimensions"][3]
    assert stage["tags"][0] == {"name": "询价客户", "keywords": ["报价", "询价", "多少钱"], "ttl_days": 90}


async def test_put_taxonomy_takes_effect_at_once(client: TestClient) -> None:
    app = client.app
    message = "我们下周去展会看看你们的展位"
    assert "展会线索" not in _suggested(app, message)
    response = await client.put(
        f"{V1}/taxonomy?actor=王管理", data=EXPO_TAXONOMY.encode(), headers={**AUTH, "Content-Type": "application/yaml"}
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["version"] == 2 and body["in_force"] is True and body["created_by"] == "王管理"
    # no wait for the watcher: the very next message is matched against the new taxonomy
    assert _suggested(app, message) == ["展会线索"]
    assert app[TAXONOMY].version.version == 2
    got = await (await client.get(f"{V1}/taxonomy", headers=AUTH)).json()
    assert got["version"] == 2 and [t["name"] for t in got["taxonomy"]["dimensions"][0]["tags"]] == [
        "展会线索",
        "询价客户",
    ]


async def test_put_taxonomy_as_json(client: TestClient) -> None:
    data = {
        "version": 1,
        "dimensions": [{"key": "stage", "name": "需求阶段", "tags": [{"name": "展会线索", "keywords": ["展会"]}]}],
    }
    response = await client.put(f"{V1}/taxonomy", json=data, headers=AUTH)
    assert response.status == 201
    assert _suggested(client.app, "展会见") == ["展会线索"]


async def test_bad_taxonomy_is_refused_whole_with_every_problem(client: TestClient) -> None:
    bad = """
version: 1
dimensions:
  - key: Stage
    name: 需求阶段
    tags:
      - name: 询价客户
        color: blue
      - name: 询价客户
"""
    response = await client.put(f"{V1}/taxonomy", data=bad.encode(), headers={**AUTH, "Content-Type": "text/yaml"})
    assert response.status == 400
    body = await response.json()
    paths = {p["path"] for p in body["problems"]}
    assert len(body["problems"]) >= 3, body
    assert any("color" in p for p in paths) and any("key" in p for p in paths)
    assert all(p["file"] == "request body" and p["reason"] for p in body["problems"])
    history = await (await client.get(f"{V1}/taxonomy/history", headers=AUTH)).json()
    assert [v["version"] for v in history["versions"]] == [1]


async def test_taxonomy_put_refuses_other_types_bad_utf8_and_oversize(client: TestClient) -> None:
    plain = await client.put(f"{V1}/taxonomy", data=b"version: 1", headers={**AUTH, "Content-Type": "text/plain"})
    assert plain.status == 415
    latin = await client.put(
        f"{V1}/taxonomy", data="名称".encode("gb18030"), headers={**AUTH, "Content-Type": "text/yaml"}
    )
    assert latin.status == 400 and "UTF-8" in (await latin.json())["error"]
    huge = b"#" * (2 * 1024 * 1024 + 10)
    too_big = await client.put(f"{V1}/taxonomy", data=huge, headers={**AUTH, "Content-Type": "text/yaml"})
    assert too_big.status == 413
    assert client.app[TAXONOMY].version.version == 1


async def test_history_and_rollback(client: TestClient) -> None:
    await client.put(
        f"{V1}/taxonomy", data=EXPO_TAXONOMY.encode(), headers={**AUTH, "Content-Type": "application/yaml"}
    )
    response = await client.post(f"{V1}/taxonomy/rollback", json={"version": 1, "actor": "李管理"}, headers=AUTH)
    assert response.status == 201
    body = await response.json()
    assert body["version"] == 3 and body["note"] == "rollback to version 1" and body["in_force"]
    assert "展会线索" not in _suggested(client.app, "展会上见")
    assert "VIP客户" in [
        t["name"]
        for t in (await (await client.get(f"{V1}/taxonomy", headers=AUTH)).json())["taxonomy"]["dimensions"][1]["tags"]
    ]
    history = await (await client.get(f"{V1}/taxonomy/history", headers=AUTH)).json()
    assert [(v["version"], v["current"]) for v in history["versions"]] == [(3, True), (2, False), (1, False)]


async def test_rollback_refusals(client: TestClient) -> None:
    missing = await client.post(f"{V1}/taxonomy/rollback", json={"version": 99}, headers=AUTH)
    assert missing.status == 404 and "99" in (await missing.json())["error"]
    for body in ({"version": "1"}, {"version": True}, {"version": 0}, {}, {"version": 1, "extra": 1}):
        response = await client.post(f"{V1}/taxonomy/rollback", json=body, headers=AUTH)
        assert response.status == 400, body
        assert (await response.json())["problems"]
    not_json = await client.post(
        f"{V1}/taxonomy/rollback", data=b"{version", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert not_json.status == 400
    array = await client.post(f"{V1}/taxonomy/rollback", json=[1], headers=AUTH)
    assert array.status == 400 and "object" in (await array.json())["error"]
    form = await client.post(f"{V1}/taxonomy/rollback", data={"version": "1"}, headers=AUTH)
    assert form.status == 415
    history = await (await client.get(f"{V1}/taxonomy/history", headers=AUTH)).json()
    assert len(history["versions"]) == 1


# ---------------------------------------------------------------- customers


async def test_import_dry_run_writes_nothing_then_import_writes(client: TestClient) -> None:
    dry = await _import(client, dry_run=True)
    assert dry == {
        "dry_run": True,
        "format": "csv-utf-8",
        "rows": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "tags_applied": 3,
    }
    found = await (await client.get(f"{V1}/customers", params={"q": "杭州云帆科技"}, headers=AUTH)).json()
    assert found == {"customer": None, "candidates": []}
    done = await _import(client)
    assert done["created"] == 2 and done["tags_applied"] == 3 and not done["dry_run"]
    again = await _import(client)
    assert again["unchanged"] == 2 and again["created"] == 0 and again["tags_applied"] == 0


async def test_import_raw_body_with_filename_header_and_xlsx(client: TestClient) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["客户名称", "区域", "标签"])
    sheet.append(["上海知行咨询", "华东", "潜在客户"])
    out = io.BytesIO()
    book.save(out)
    response = await client.post(
        f"{V1}/customers/import", data=out.getvalue(), headers={**AUTH, "X-Filename": "客户.xlsx"}
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["format"] == "xlsx" and body["created"] == 1
    customer_id = await _customer_id(client, "上海知行咨询")
    summary = await (await client.get(f"{V1}/customers/{customer_id}", headers=AUTH)).json()
    assert [t["name"] for g in summary["dimensions"] for t in g["tags"]] == ["潜在客户"]


async def test_bad_import_lists_row_problems_and_writes_nothing(client: TestClient) -> None:
    bad = CUSTOMERS_CSV + ",无名,wangwu,,CRM-003,\n广州星河贸易,星河,zhao,华南,CRM-004,不存在的标签\n"
    form = FormData()
    form.add_field("file", bad.encode(), filename="customers.csv")
    response = await client.post(f"{V1}/customers/import", data=form, headers=AUTH)
    assert response.status == 400
    body = await response.json()
    assert {"row": 4, "column": "name", "reason": "name is empty; every customer needs a name"} in body["problems"]
    found = await (await client.get(f"{V1}/customers", params={"q": "杭州云帆科技"}, headers=AUTH)).json()
    assert found["customer"] is None
    form = FormData()
    # an unknown tag (checked against the taxonomy) refuses the whole file: the good row is not written either
    tagged = "name,crm_id,tags\n杭州云帆科技,CRM-001,VIP客户\n广州星河贸易,CRM-004,不存在的标签\n"
    form.add_field("file", tagged.encode(), filename="c.csv")
    response = await client.post(f"{V1}/customers/import", data=form, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["problems"][0]["column"] == "tags"
    assert (await (await client.get(f"{V1}/customers", params={"q": "杭州云帆科技"}, headers=AUTH)).json())[
        "customer"
    ] is None


async def test_import_lists_file_and_taxonomy_problems_in_one_response(client: TestClient) -> None:
    mixed = (
        "name,company,crm_id,contract_end,tags\n"
        "杭州云帆科技,云帆,CRM-001,2026-03-01,VIP客户\n"
        "成都麦田教育,麦田,CRM-002,2026-02-30,活跃客户\n"
        "广州星河贸易,星河,CRM-004,,不存在的标签\n"
        "深圳蓝海,@SUM(A1),CRM-005,,询价客户\n"
    )
    form = FormData()
    form.add_field("file", mixed.encode(), filename="客户.csv")
    response = await client.post(f"{V1}/customers/import", data=form, headers=AUTH)
    assert response.status == 400
    problems = (await response.json())["problems"]
    assert [(p["row"], p["column"]) for p in problems] == [(3, "contract_end"), (4, "tags"), (5, "company")]
    assert "not a date" in problems[0]["reason"] and "不存在的标签" in problems[1]["reason"]
    found = await (await client.get(f"{V1}/customers", params={"q": "杭州云帆科技"}, headers=AUTH)).json()
    assert found["customer"] is None


async def test_import_request_refusals(client: TestClient) -> None:
    no_name = await client.post(f"{V1}/customers/import", data=b"name\nx\n", headers=AUTH)
    assert no_name.status == 400 and "X-Filename" in (await no_name.json())["error"]
    wrong_type = await client.post(f"{V1}/customers/import", data=b"name\nx\n", headers={**AUTH, "X-Filename": "c.xls"})
    assert wrong_type.status == 400 and ".xlsx" in (await wrong_type.json())["problems"][0]["reason"]
    form = FormData()
    form.add_field("other", "x")
    no_field = await client.post(f"{V1}/customers/import", data=form, headers=AUTH)
    assert no_field.status == 400 and "'file'" in (await no_field.json())["error"]
    bad_flag = await client.post(
        f"{V1}/customers/import?dry_run=maybe", data=b"name\nx\n", headers={**AUTH, "X-Filename": "c.csv"}
    )
    assert bad_flag.status == 400 and "dry_run" in (await bad_flag.json())["error"]
    big = await client.post(
        f"{V1}/customers/import", data=b"x" * (20 * 1024 * 1024 + 70 * 1024), headers={**AUTH, "X-Filename": "c.csv"}
    )
    assert big.status == 413


async def test_customer_summary_history_and_resolve(client: TestClient) -> None:
    await _import(client)
    customer_id = await _customer_id(client, "杭州云帆科技")
    summary = await (await client.get(f"{V1}/customers/{customer_id}", headers=AUTH)).json()
    assert summary["customer"]["crm_id"] == "CRM-001" and summary["count"] == 2
    assert [(g["key"], [t["name"] for t in g["tags"]]) for g in summary["dimensions"]] == [
        ("value", ["VIP客户"]),
        ("stage", ["询价客户"]),
    ]
    assert summary["dimensions"][1]["tags"][0]["source"] == "import"
    history = await (await client.get(f"{V1}/customers/{customer_id}/history?limit=1", headers=AUTH)).json()
    assert len(history["events"]) == 1 and history["events"][0]["kind"] == "added"
    by_crm = await (await client.get(f"{V1}/customers", params={"q": "CRM-002"}, headers=AUTH)).json()
    assert by_crm["customer"]["name"] == "成都麦田教育"
    assert (await client.get(f"{V1}/customers/abc", headers=AUTH)).status == 400
    assert (await client.get(f"{V1}/customers/0", headers=AUTH)).status == 400
    missing = await client.get(f"{V1}/customers/9999", headers=AUTH)
    assert missing.status == 404 and "9999" in (await missing.json())["error"]
    assert (await client.get(f"{V1}/customers/9999/history", headers=AUTH)).status == 404
    assert (await client.get(f"{V1}/customers/{customer_id}/history?limit=0", headers=AUTH)).status == 400
    assert (await client.get(f"{V1}/customers", headers=AUTH)).status == 400


async def test_search(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    await _import(client)
    response = await client.get(f"{V1}/search", params={"expr": "VIP客户 AND 询价客户"}, headers=AUTH)
    body = await response.json()
    assert response.status == 200 and body["total"] == 1 and body["customers"][0]["name"] == "杭州云帆科技"
    every = await (
        await client.get(f"{V1}/search", params={"expr": "VIP客户 OR 活跃客户", "count": 1}, headers=AUTH)
    ).json()
    assert every["total"] == 2 and len(every["customers"]) == 1 and every["total_is_lower_bound"] is False
    monkeypatch.setattr(search, "COUNT_UP_TO", 1)  # two match: counted to one, then "more than one"
    for after in (0, every["next_after"]):
        params = {"expr": "VIP客户 OR 活跃客户", "count": 1, "after": after}
        capped = await (await client.get(f"{V1}/search", params=params, headers=AUTH)).json()
        assert (capped["total"], capped["total_is_lower_bound"], len(capped["customers"])) == (1, True, 1)
    unknown = await client.get(f"{V1}/search", params={"expr": "VIP客"}, headers=AUTH)
    assert unknown.status == 400 and "VIP客户" in (await unknown.json())["problems"][0]["did_you_mean"]
    broken = await client.get(f"{V1}/search", params={"expr": "VIP客户 AND ("}, headers=AUTH)
    assert broken.status == 400 and "bad expression" in (await broken.json())["error"]
    assert (await client.get(f"{V1}/search", params={"expr": "VIP客户", "count": 500}, headers=AUTH)).status == 400
    assert (await client.get(f"{V1}/search", params={"expr": "VIP客户", "skip": -1}, headers=AUTH)).status == 400
    assert (await client.get(f"{V1}/search", headers=AUTH)).status == 400


async def test_tag_changes_are_all_or_nothing(client: TestClient) -> None:
    await _import(client)
    customer_id = await _customer_id(client, "杭州云帆科技")
    url = f"{V1}/customers/{customer_id}/tags"
    ok = await client.post(
        url, json={"add": ["活跃客户", "普通客户"], "remove": ["询价客户"], "actor": "张三"}, headers=AUTH
    )
    assert ok.status == 200, await ok.text()
    changes = (await ok.json())["changes"]
    assert [(c["tag"], c["outcome"]) for c in changes] == [
        ("询价客户", "removed"),
        ("活跃客户", "added"),
        ("普通客户", "added"),
    ]
    assert changes[2]["replaced"] == ["VIP客户"]  # 价值等级 is exclusive

    refused = await client.post(url, json={"add": ["沉默客户", "沉默客"], "actor": "张三"}, headers=AUTH)
    assert refused.status == 400
    body = await refused.json()
    assert [p["field"] for p in body["problems"]] == ["add[1]"] and "沉默客户" in body["problems"][0]["did_you_mean"]
    summary = await (await client.get(f"{V1}/customers/{customer_id}", headers=AUTH)).json()
    held = sorted(t["name"] for g in summary["dimensions"] for t in g["tags"])
    assert held == ["普通客户", "活跃客户"]  # 沉默客户 was rolled back with the refused request
    events = (await (await client.get(f"{V1}/customers/{customer_id}/history", headers=AUTH)).json())["events"]
    assert events[0]["actor"] == "张三" and events[0]["source"] == "manual"
    assert not any(e["tag"] == "沉默客户" for e in events)


async def test_tag_change_refusals(client: TestClient) -> None:
    await _import(client)
    customer_id = await _customer_id(client, "杭州云帆科技")
    url = f"{V1}/customers/{customer_id}/tags"
    cases = [
        {"add": ["活跃客户"]},  # no actor
        {"actor": "张三"},  # nothing to do
        {"add": "活跃客户", "actor": "张三"},
        {"add": [""], "actor": "张三"},
        {"add": ["活跃客户"], "remove": ["活跃客户"], "actor": "张三"},
        {"add": ["活跃客户"], "actor": "张三", "note": "x"},
    ]
    for body in cases:
        response = await client.post(url, json=body, headers=AUTH)
        assert response.status == 400, body
        assert (await response.json())["problems"], body
    missing = await client.post(f"{V1}/customers/9999/tags", json={"add": ["活跃客户"], "actor": "张三"}, headers=AUTH)
    assert missing.status == 404


async def test_put_user(client: TestClient) -> None:
    response = await client.put(
        f"{V1}/users/wang.wu", json={"role": "manager", "regions": ["华东", "华南", "华东"]}, headers=AUTH
    )
    assert response.status == 200
    assert await response.json() == {
        "id": "wang.wu",
        "role": "manager",
        "regions": ["华东", "华南"],
        "display_name": "",
        "warnings": [],  # the sample taxonomy has no regional tags: nothing to check regions against
    }
    bad = await client.put(f"{V1}/users/wang.wu", json={"role": "boss", "regions": "华东"}, headers=AUTH)
    assert bad.status == 400
    assert {p["field"] for p in (await bad.json())["problems"]} == {"role", "regions"}
    async with client.app[DATABASE].unit_of_work() as uow:
        stored = await uow.users.get("wang.wu")
    assert stored is not None and stored.role.value == "manager"


async def test_tag_report_endpoint(client: TestClient) -> None:
    await _import(client)
    response = await client.get(f"{V1}/reports/tags", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    vip = next(t for t in body["tags"] if t["tag"] == "VIP客户")
    assert vip["holders"] == 1 and vip["added_last_30_days"] == 1 and vip["last_used"]
    retire = {(r["tag"], r["reason"]) for r in body["retire_candidates"]}
    assert ("高危流失", "never_used") in retire and not any(t == "VIP客户" for t, _ in retire)
    assert set(body) >= {"tags", "retire_candidates", "merge_candidates", "near_cap", "generated_at"}


async def test_get_with_oversized_declared_body_is_413(client: TestClient) -> None:
    response = await client.get(f"{V1}/taxonomy", data=b"x" * 10, headers=AUTH)
    assert response.status == 413
