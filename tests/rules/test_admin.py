"""POST /admin/v1/events (JSON array or NDJSON) and POST /admin/v1/rules/test through the real app."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from app import DATABASE
from core.records import CustomerDraft
from core.types import Role, User
from storage import tables as t
from tagging.builtin import load_builtin
from tagging.loader import dump_taxonomy
from tests.admin.conftest import AUTH, app, client

__all__ = ["app", "client"]


async def _seed(client: TestClient) -> None:
    now = datetime.now(UTC)
    async with client.app[DATABASE].unit_of_work() as uow:
        await uow.customers.add(
            CustomerDraft(
                "甲公司",
                owner="小张",
                region="华东",
                crm_id="CRM-1",
                contract_end=date.fromordinal(now.date().toordinal() + 10),
            ),
            now,
        )
        await uow.users.save(User("王经理", Role.MANAGER, ("华东",)), now)


async def _count(client: TestClient, table: object) -> int:
    async with client.app[DATABASE].engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_events_as_an_array_and_as_ndjson_idempotent_with_per_line_errors(client: TestClient) -> None:
    await _seed(client)
    events = [
        {"id": "e1", "customer": "CRM-1", "kind": "purchase", "at": "2026-12-01T10:00:00+08:00", "amount": 10},
        {"id": "e2", "customer": "甲公司", "kind": "click", "at": "2026-12-01T10:00:00", "properties": {"url": "x"}},
        {"id": "e3", "customer": "nobody", "kind": "click", "at": "2026-12-01T10:00:00"},
    ]
    response = await client.post("/admin/v1/events", json=events, headers=AUTH)
    assert response.status == 200
    data = await response.json()
    assert data["stored"] == 2 and data["errors"] == [{"line": 3, "reason": data["errors"][0]["reason"]}]
    assert data["errors"][0]["reason"].startswith("unknown customer 'nobody'")
    ndjson = "\n".join(json.dumps(e, ensure_ascii=False) for e in events[:2]) + "\n"
    response = await client.post(
        "/admin/v1/events", data=ndjson.encode(), headers={**AUTH, "Content-Type": "application/x-ndjson"}
    )
    assert response.status == 200 and (await response.json())["repeated"] == 2
    assert await _count(client, t.customer_events) == 2
    bad = await client.post(
        "/admin/v1/events", data=b'{"id": "x"}\nnot json\n', headers={**AUTH, "Content-Type": "application/x-ndjson"}
    )
    assert bad.status == 400
    body = await bad.json()
    assert body["problems"][0].startswith("line 1: ") and body["problems"][1].startswith("line 2: ")
    assert "not valid JSON" in body["problems"][1]
    wrong = await client.post("/admin/v1/events", data=b"a,b", headers={**AUTH, "Content-Type": "text/csv"})
    assert wrong.status == 415
    anonymous = await client.post("/admin/v1/events", json=events)
    assert anonymous.status == 401


async def test_rules_test_route_forecasts_a_draft_and_writes_nothing(client: TestClient) -> None:
    await _seed(client)
    before = [await _count(client, x) for x in (t.tag_assignments, t.tag_events, t.outbox)]
    draft = dump_taxonomy(load_builtin())
    response = await client.post(
        "/admin/v1/rules/test?since=30", data=draft.encode(), headers={**AUTH, "Content-Type": "application/yaml"}
    )
    assert response.status == 200
    data = await response.json()
    contract = next(r for r in data["rules"] if r["rule"] == "服务到期未续费")
    assert contract["gain"] == {"高危流失": 1} and contract["recipients"] == {"王经理": 1}
    assert [await _count(client, x) for x in (t.tag_assignments, t.tag_events, t.outbox)] == before
    broken = draft.replace("add: 高危流失", "add: 高危流失客户")
    refused = await client.post(
        "/admin/v1/rules/test", data=broken.encode(), headers={**AUTH, "Content-Type": "application/yaml"}
    )
    assert refused.status == 400
    assert any("高危流失客户" in p["reason"] for p in (await refused.json())["problems"])
