"""The Zoho CRM connector against the fake, and a whole sync through it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from core.crm.port import CrmError, CrmRef
from core.crm.ports import LinkState
from core.crm.sync import CrmSync
from core.tags.assignments import TaggingRules, apply_tag
from core.types import Source
from storage.crm import SqlCrmStore
from storage.database import Database
from tagging.taxonomy import Taxonomy
from tests.crm.conftest import ZohoFixture

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def _drain(conn: object, cursor: str | None, fields: list[str]) -> tuple[list[str], str]:
    ids: list[str] = []
    while True:
        page = await conn.changes(cursor, fields)  # type: ignore[attr-defined]
        ids += [r.ref.crm_id for r in page.records]
        cursor = page.cursor
        if page.done:
            return ids, cursor


async def test_pages_with_more_records_and_reads_only_changes_since_the_watermark(zoho: ZohoFixture) -> None:
    fake = zoho.fake
    ids = [fake.add("Accounts", f"公司{i}", ["华东"], Industry="Retail") for i in range(3)]
    contact = fake.add("Contacts", "张三")
    conn = zoho.connector()
    try:
        await conn.check(["Industry"])
        seen, cursor = await _drain(conn, None, ["Industry"])
        assert seen == [*ids, contact]
        assert any("page=2" in q for _, q in fake.requests)
        fake.update("Accounts", ids[1], Account_Name="改名")
        fake.delete("Accounts", ids[2])
        again, _ = await _drain(conn, cursor, ["Industry"])
        assert ids[1] in again and ids[2] in again and ids[0] not in again
        record = await conn.get(CrmRef(ids[0], "Accounts"))
        assert record is not None and record.tags == ("华东",)
        assert await conn.get(CrmRef(ids[2], "Accounts")) is None
    finally:
        await conn.close()


async def test_native_tags_are_added_and_removed_and_429_is_honoured(zoho: ZohoFixture) -> None:
    fake = zoho.fake
    rid = fake.add("Accounts", "甲公司", ["制造业"])
    conn = zoho.connector()
    try:
        fake.throttle_next = 2
        await conn.write_tags(CrmRef(rid, "Accounts"), ["VIP客户"], ["制造业"])
        assert fake.tags("Accounts", rid) == ["VIP客户"]
    finally:
        await conn.close()


async def test_many_concurrent_expiries_refresh_the_token_once(zoho: ZohoFixture) -> None:
    fake = zoho.fake
    rid = fake.add("Accounts", "甲公司")
    conn = zoho.connector()
    try:
        await conn.get(CrmRef(rid, "Accounts"))
        fake.tokens.clear()  # every access token expires at once
        fake.refresh_delay = 0.05
        results = await asyncio.gather(*(conn.get(CrmRef(rid, "Accounts")) for _ in range(10)))
        assert all(r is not None for r in results)
        assert fake.refreshes == 2  # the first sign-in and a single refresh for ten 401s
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("change", "html", "expected"),
    [
        (
            {"refresh_token": "1000.zz-secret-rt"},
            False,
            "zoho token refresh: invalid_code; the refresh token is expired",
        ),
        (
            {"client_secret": "zz-secret-cs"},
            False,
            "zoho token refresh: invalid_client; check KEBIAO_CRM_ZOHO_CLIENT_ID",
        ),
        ({}, True, "zoho read the tag list of Accounts: unexpected answer (HTTP 200, HTML)"),
    ],
)
async def test_bad_credentials_and_garbage_give_one_line(
    zoho: ZohoFixture, change: dict[str, str], html: bool, expected: str
) -> None:
    zoho.fake.html = html
    conn = zoho.connector(**change)
    try:
        with pytest.raises(CrmError) as caught:
            await conn.check([])
    finally:
        await conn.close()
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert "zz-secret" not in str(caught.value)


async def test_unknown_mapped_field_is_named(zoho: ZohoFixture) -> None:
    conn = zoho.connector()
    try:
        with pytest.raises(CrmError, match="field Sector does not exist; fix crm_fields"):
            await conn.check(["Sector"])
    finally:
        await conn.close()


async def test_sync_through_zoho(database: Database, zoho: ZohoFixture, crm_taxonomy: Taxonomy) -> None:
    from tagging.loader import load_taxonomy_text
    from tests.crm.conftest import TAXONOMY

    taxonomy = load_taxonomy_text(TAXONOMY.replace("kb_industry:", "Industry:"), source="crm.yaml")
    fake = zoho.fake
    a = fake.add("Accounts", "甲公司", ["华东"], Industry="Manufacturing")
    b = fake.add("Contacts", "李四")
    sync = CrmSync(SqlCrmStore(database.engine), zoho.connector(), lambda: taxonomy, TaggingRules(), "r1")
    report = await sync.run(NOW)
    assert report.error is None and report.created == 2
    async with database.unit_of_work() as uow:
        (customer,) = await uow.customers.find_exact(a)
        assert {x.tag for x in await uow.assignments.active_for(customer.id)} == {"华东", "制造业"}
        (contact,) = await uow.customers.find_exact(b)
        await apply_tag(uow, taxonomy, TaggingRules(), contact.id, "VIP客户", actor="u", source=Source.MANUAL, now=NOW)
    fake.delete("Accounts", a)
    report = await sync.run(NOW + timedelta(minutes=5))
    await sync.connector.close()
    assert report.error is None and report.written == 1 and report.unlinked == 1
    assert fake.tags("Contacts", b) == ["VIP客户"]
    async with SqlCrmStore(database.engine).unit_of_work(read_only=True) as uow:
        links = await uow.crm.links("zoho", [customer.id])
    assert links[customer.id].state is LinkState.DELETED


async def test_basic_attributes_are_read_per_module_and_a_missing_field_is_named(zoho: ZohoFixture) -> None:
    from core.crm.port import AttributeField

    fake = zoho.fake
    account = fake.add("Accounts", "甲公司", Industry="Retail", Employees=80, Billing_State="浙江")
    contact = fake.add("Contacts", "张三", Title="采购经理", Mailing_State="江苏")
    attributes = (
        AttributeField("industry", "Accounts", "Industry"),
        AttributeField("size", "Accounts", "Employees"),
        AttributeField("region", "Accounts", "Billing_State"),
        AttributeField("region", "Contacts", "Mailing_State"),
        AttributeField("role", "Contacts", "Title"),
    )
    conn = zoho.connector(attributes=attributes)
    try:
        await conn.check([])
        seen = {}
        cursor = None
        while True:
            page = await conn.changes(cursor, [])
            seen.update({r.ref.crm_id: dict(r.attributes) for r in page.records})
            cursor = page.cursor
            if page.done:
                break
        assert seen[account] == {"industry": "Retail", "size": "80", "region": "浙江"}
        assert seen[contact] == {"region": "江苏", "role": "采购经理"}
    finally:
        await conn.close()
    wrong = zoho.connector(attributes=(AttributeField("role", "Contacts", "Job_Role"),))
    try:
        with pytest.raises(
            CrmError, match="field Job_Role \\(attribute role\\) does not exist; fix KEBIAO_CRM_ZOHO_ATTRIBUTES"
        ):
            await wrong.check([])
    finally:
        await wrong.close()


async def test_an_accounts_only_field_maps_where_it_exists(
    database: Database, zoho: ZohoFixture, crm_taxonomy: Taxonomy
) -> None:
    from tagging.loader import load_taxonomy_text
    from tests.crm.conftest import TAXONOMY

    taxonomy = load_taxonomy_text(
        TAXONOMY.replace(
            "kb_industry: {Manufacturing: 制造业, Retail: 零售电商}",
            "Annual_Revenue: [{range: '>= 1000000', tag: 华东}]",
        )
    )
    fake = zoho.fake
    big = fake.add("Accounts", "甲公司", Annual_Revenue=2_500_000)
    small = fake.add("Accounts", "乙公司", Annual_Revenue=999_999.99)
    contact = fake.add("Contacts", "张三")
    conn = zoho.connector()
    sync = CrmSync(SqlCrmStore(database.engine), conn, lambda: taxonomy, TaggingRules(), "replica-a")
    report = await sync.run(NOW)
    await conn.close()
    assert report.error is None, report.error
    assert not any("Contacts?" in q and "Annual_Revenue" in q for _, q in fake.requests)
    async with database.unit_of_work(read_only=True) as uow:
        held = {}
        for crm_id in (big, small, contact):
            (customer,) = await uow.customers.find_exact(crm_id)
            held[crm_id] = {a.tag for a in await uow.assignments.active_for(customer.id)}
    assert held == {big: {"华东"}, small: set(), contact: set()}
