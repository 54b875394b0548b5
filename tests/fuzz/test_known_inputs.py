"""Every malformed input of the attack report, replayed through the real app on SQLite and PostgreSQL: each is
answered 4xx with a reason naming the field (and the limit), nothing is written, nothing is logged as an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from yarl import URL

from app import DATABASE
from storage import tables as t
from tests.fuzz.conftest import ADMIN_AUTH, ErrorLog
from tests.wecom.callbacks import AES_KEY, TOKEN, signed, text_xml
from tests.wecom.fake_api import CORP_ID

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads" / "teams"
JSON_TYPE = {"Content-Type": "application/json"}


def _activity(name: str, service_url: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    data["serviceUrl"] = service_url
    data.update(changes)
    return data


async def _refused(response: Any, status: int, *words: str) -> str:
    text = await response.text()
    assert response.status == status, (response.status, text[:300])
    for word in words:
        assert word in text, (word, text[:300])
    return text


async def _count(client: TestClient, table: Any) -> int:
    async with client.app[DATABASE].engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_teams_bodies_that_broke_the_parser_or_the_database_get_400(
    served: TestClient, connector_url: str, server_errors: ErrorLog
) -> None:
    message = _activity("personal_message", connector_url)
    raw_message = json.dumps(message).encode()
    cases: list[tuple[bytes, tuple[str, ...]]] = [
        (b"[" * 1000 + b"]" * 1000, ("nests",)),
        (raw_message[:-1] + b', "channelData2": ' + b"9" * 5000 + b"}", ("5,000 digits", "limit 40")),
        (raw_message[:-1] + b', "x": NaN}', ("NaN",)),
        (raw_message.replace(b'"1732504800123"', b'"17325\\ud800"'), ("id", "lone surrogate")),
        (raw_message.replace(b'"id": "1732504800123"', b'"id": "17\\u00003"'), ("id", "NUL")),
    ]
    for body, words in cases:
        await _refused(await served.post("/api/messages", data=body, headers=JSON_TYPE), 400, *words)
    card = _activity("adaptive_card_action", connector_url, value=7)
    await _refused(await served.post("/api/messages", json=card), 400, "value", "object")
    long_name = _activity("personal_message", connector_url)
    long_name["from"] = {**long_name["from"], "name": "王" * 201}
    await _refused(await served.post("/api/messages", json=long_name), 400, "from.name", "limit 200")
    long_conversation = _activity("personal_message", connector_url)
    long_conversation["conversation"] = {**long_conversation["conversation"], "id": "a:" + "c" * 600}
    await _refused(await served.post("/api/messages", json=long_conversation), 400, "conversation.id", "limit 480")
    assert await _count(served, t.users) == 0
    assert await _count(served, t.inbound_dedup) == 0


async def test_admin_values_that_broke_postgresql_or_the_int_limits_get_400(
    served: TestClient, server_errors: ErrorLog
) -> None:
    async with served.app[DATABASE].unit_of_work() as uow:
        from datetime import UTC, datetime

        from core.records import CustomerDraft

        customer = await uow.customers.add(CustomerDraft(name="ABC公司"), datetime.now(UTC))

    def get(path: str) -> Any:
        return served.get(URL("/admin/v1" + path, encoded=True), headers=ADMIN_AUTH)

    await _refused(await get("/customers?q=ABC%00"), 400, "query parameter q", "NUL")
    await _refused(await get("/customers/9223372036854775808"), 400, "customer id", "9223372036854775807")
    await _refused(await get("/customers/" + "9" * 5000), 400, "customer id")
    await _refused(await get("/customers/1/history?limit=" + "9" * 5000), 400, "limit")
    tags = f"/admin/v1/customers/{customer.id}/tags"
    body = b'{"add": ["VIP\\ud800"], "actor": "ops"}'
    response = await served.post(tags, data=body, headers={**ADMIN_AUTH, **JSON_TYPE})
    await _refused(response, 400, "add[0]", "lone surrogate")
    response = await served.post(
        tags + "?actor=a%00b", json={"add": ["VIP客户"], "actor": "a\x00b"}, headers=ADMIN_AUTH
    )
    await _refused(response, 400, "actor", "NUL")
    for body in (b"[" * 1000 + b"]" * 1000, b'{"version": ' + b"9" * 5000 + b"}"):
        response = await served.post("/admin/v1/taxonomy/rollback", data=body, headers={**ADMIN_AUTH, **JSON_TYPE})
        await _refused(response, 400)
    for version in (2**31, 2**63):
        response = await served.post("/admin/v1/taxonomy/rollback", json={"version": version}, headers=ADMIN_AUTH)
        await _refused(response, 400, "version", "2147483647")
    user = "/admin/v1/users/" + "u%00ser"
    await _refused(await served.put(URL(user, encoded=True), json={"role": "manager"}, headers=ADMIN_AUTH), 400, "NUL")
    long_user = "/admin/v1/users/" + "u" * 201
    await _refused(await served.put(long_user, json={"role": "manager"}, headers=ADMIN_AUTH), 400, "user id")
    yaml_type = {**ADMIN_AUTH, "Content-Type": "application/yaml"}
    for document in ("version: " + "9" * 5000 + "\ndimensions: []\n", "version: 1\ndimensions: []\nwhen: 2001-13-45\n"):
        response = await served.put("/admin/v1/taxonomy", data=document.encode(), headers=yaml_type)
        assert 400 <= response.status < 500, (response.status, await response.text())
    surrogate_tag = 'version: 1\ndimensions:\n  - key: a\n    name: b\n    tags:\n      - name: "\\ud800"\n'
    response = await served.put("/admin/v1/taxonomy", data=surrogate_tag.encode(), headers=yaml_type)
    # libyaml refuses the escape while reading, before any path exists: the line and column name the place.
    await _refused(response, 400, "line 6, column 18", "invalid Unicode character escape")
    long_key = "version: 1\ndimensions:\n  - key: " + "k" * 101 + "\n    name: b\n    tags: [{name: t}]\n"
    response = await served.put("/admin/v1/taxonomy", data=long_key.encode(), headers=yaml_type)
    await _refused(response, 400, "dimensions[0].key", "limit 100")
    multipart = {**ADMIN_AUTH, "Content-Type": "multipart/form-data; boundary=XYZ"}
    nul_name = b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a\x00.csv"\r\n\r\nname\r\n--XYZ--\r\n'
    unterminated = b'--XYZ\r\nContent-Disposition: form-data; name="file"\r\n'
    for body in (unterminated, b"garbage", b"--XYZ--\r\n", nul_name):
        response = await served.post("/admin/v1/customers/import", data=body, headers=multipart)
        await _refused(response, 400)
    assert await _count(served, t.tag_events) == 0
    assert await _count(served, t.users) == 0
    assert await _count(served, t.taxonomy_versions) == 1


async def test_wecom_callback_with_a_5000_digit_create_time_gets_400(
    served: TestClient, server_errors: ErrorLog
) -> None:
    from bots.wecom.crypto import WeComCrypto

    crypto = WeComCrypto(TOKEN, AES_KEY, CORP_ID)
    stamp = "<CreateTime>1732510200</CreateTime>"
    inner = text_xml("你好").replace(stamp, f"<CreateTime>{'9' * 5000}</CreateTime>")
    query, body = signed(crypto, inner)
    response = await served.post("/wecom/callback", params=query, data=body.encode())
    await _refused(response, 400, "callback XML refused")
    inner = text_xml("你好").replace(stamp, f"<CreateTime>{'9' * 30}</CreateTime>")
    query, body = signed(crypto, inner)
    await _refused(await served.post("/wecom/callback", params=query, data=body.encode()), 400)
    assert await _count(served, t.inbound_messages) == 0


async def test_teams_ids_beyond_the_database_range_get_an_answer_not_a_500(
    served: TestClient, connector_url: str, server_errors: ErrorLog
) -> None:
    """Card actions and message-extension values with huge numbers: the invoke is answered (error card or 400)."""
    for verb, data in (
        ("suggestion.accept", {"suggestion_id": 2**63}),
        ("suggestion.accept_all", {"suggestion_ids": [1, 10**30]}),
        ("customer.show", {"customer_id": "9" * 30}),
        ("alert.snooze", {"alert_id": 2**64, "days": 2**63}),
        ("search.page", {"query": "VIP客户", "page": 2**63}),
        ("assignment.undo", {"assignment_id": 2**63, "customer_id": 2**63, "message_key": "k"}),
    ):
        card = _activity("adaptive_card_action", connector_url, id=f"card-{verb}")
        card["value"]["action"].update(verb=verb, data=data)
        response = await served.post("/api/messages", json=card)
        assert response.status in (200, 400), (verb, response.status, await response.text())
    query = _activity("compose_extension_query", connector_url)
    query["value"]["queryOptions"] = {"skip": 10**30, "count": 10**30}
    response = await served.post("/api/messages", json=query)
    assert response.status in (200, 400), (response.status, await response.text())
    submit = _activity("compose_extension_submit_action", connector_url)
    submit["value"]["data"] = {"customer": "9" * 30, "tags": ["VIP客户"]}
    response = await served.post("/api/messages", json=submit)
    assert response.status in (200, 400), (response.status, await response.text())
