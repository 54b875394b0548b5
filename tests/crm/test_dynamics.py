"""The Dataverse connector against the fake: sign-in, paging, tags, throttling and bad answers."""

from __future__ import annotations

import pytest

from core.crm.port import CrmError, CrmRef
from tests.crm.conftest import DynamicsFixture


async def test_pages_through_accounts_then_contacts_and_resumes_from_the_watermark(dynamics: DynamicsFixture) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司", ["VIP客户", "制造业"], kb_industry="Retail")
    fake.add("accounts", "乙公司")
    fake.add("accounts", "丙公司")
    c = fake.add("contacts", "张三")
    conn = dynamics.connector()
    try:
        await conn.check(["kb_industry"])
        seen, cursor, done = [], None, False
        while not done:
            page = await conn.changes(cursor, ["kb_industry"])
            seen += [r.ref.crm_id for r in page.records]
            cursor, done = page.cursor, page.done
        assert seen[:3] == sorted(fake.rows["accounts"], key=lambda k: fake.rows["accounts"][k]["modifiedon"])
        assert seen[-1] == c
        assert any("$skiptoken" in q for _, q in fake.requests)  # the second page came from @odata.nextLink
        first = await conn.get(CrmRef(a, "account"))
        assert first is not None and set(first.tags) == {"VIP客户", "制造业"}
        fake.update("accounts", a, name="甲公司2")
        again, ids = cursor, []
        while True:
            page = await conn.changes(again, ["kb_industry"])
            ids += [r.ref.crm_id for r in page.records]
            again = page.cursor
            if page.done:
                break
        assert a in ids and len(ids) < 4  # only records at or after each table's watermark
    finally:
        await conn.close()


async def test_writes_tags_as_option_values_and_honours_429(dynamics: DynamicsFixture) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司", ["制造业"])
    conn = dynamics.connector()
    try:
        await conn.check([])
        fake.throttle_next = 2
        await conn.write_tags(CrmRef(a, "account"), ["VIP客户"], ["制造业"])
        assert fake.labels("accounts", a) == ["VIP客户"]
        assert sum(1 for m, _ in fake.requests if m == "PATCH") == 1
    finally:
        await conn.close()


async def test_an_expired_token_is_renewed_once(dynamics: DynamicsFixture) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司")
    conn = dynamics.connector()
    try:
        await conn.check([])
        fake.expire_tokens()
        assert await conn.get(CrmRef(a, "account")) is not None
        assert fake.token_requests == 2
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("change", "setup", "expected"),
    [
        ({"client_secret": "wrong"}, None, "dynamics sign-in: invalid_client"),
        ({}, "html", "dynamics read accounts: unexpected answer (HTTP 200, HTML)"),
        (
            {"tags_field": "kb_missing"},
            None,
            "no choices column kb_missing on account; set KEBIAO_CRM_DYNAMICS_TAGS_FIELD",
        ),
    ],
)
async def test_bad_input_gives_one_line_naming_connector_call_and_fix(
    dynamics: DynamicsFixture, change: dict[str, str], setup: str | None, expected: str
) -> None:
    if setup == "html":
        dynamics.fake.html = True
    conn = dynamics.connector(**change)
    try:
        with pytest.raises(CrmError) as caught:
            await conn.check(["kb_industry"])
    finally:
        await conn.close()
    message = str(caught.value)
    assert expected in message and "\n" not in message and "; " in message
    assert "fake-dynamics-secret" not in message and "wrong" not in message


async def test_a_mapped_field_that_does_not_exist_is_named(dynamics: DynamicsFixture) -> None:
    conn = dynamics.connector()
    try:
        with pytest.raises(CrmError, match="field kb_nosuch does not exist; fix crm_fields"):
            await conn.check(["kb_nosuch"])
    finally:
        await conn.close()
