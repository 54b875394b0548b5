"""The sync service end to end: the real database (SQLite and PostgreSQL), the real connector, the fake CRM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.crm.ports import LinkState
from core.crm.sync import CrmSync, SyncOptions
from core.tags.assignments import TaggingRules, apply_tag, remove_tag
from core.types import Source
from storage.crm import SqlCrmStore
from storage.database import Database
from tagging.policy import PolicyRefusal
from tagging.taxonomy import Taxonomy
from tests.crm.conftest import DynamicsFixture

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _sync(database: Database, dynamics: DynamicsFixture, taxonomy: Taxonomy, owner: str = "replica-a") -> CrmSync:
    return CrmSync(SqlCrmStore(database.engine), dynamics.connector(), lambda: taxonomy, TaggingRules(), owner)


async def _tags(database: Database, crm_id: str) -> set[tuple[str, str]]:
    async with database.unit_of_work(read_only=True) as uow:
        (customer,) = await uow.customers.find_exact(crm_id)
        return {(a.dimension, a.tag) for a in await uow.assignments.active_for(customer.id)}


async def _customer_id(database: Database, crm_id: str) -> int:
    async with database.unit_of_work(read_only=True) as uow:
        (customer,) = await uow.customers.find_exact(crm_id)
        return customer.id


async def test_first_sync_creates_customers_and_brings_crm_mastered_tags_in(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司", ["华东", "VIP客户"], kb_industry="Manufacturing")
    b = fake.add("accounts", "乙公司", ["询价客户"], kb_industry="Unknown")
    c = fake.add("contacts", "张三")
    sync = _sync(database, dynamics, crm_taxonomy)
    report = await sync.run(NOW)
    await sync.connector.close()
    assert report.error is None and report.records == 3 and report.created == 3
    assert await _tags(database, a) == {("basic", "华东"), ("basic", "制造业")}  # value tags are Kebiao's: not pulled
    assert await _tags(database, b) == set() and await _tags(database, c) == set()
    async with database.unit_of_work(read_only=True) as uow:
        events = await uow.events.for_customer(await _customer_id(database, a), 0, 10)
    assert {e.actor for e in events} == {"crm:dynamics"} and {e.source for e in events} == {Source.SYNC}
    # Kebiao is master of 价值等级: the CRM's VIP客户 (not held in Kebiao) is taken off the CRM record.
    assert fake.labels("accounts", a) == ["华东"]
    state = await SqlCrmStore(database.engine).state("dynamics")
    assert state is not None and state.last_ok_at == NOW and state.cursor and state.lease_owner is None


async def test_kebiao_tags_are_written_back_but_never_session_or_managers_only_tags(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司")
    sync = _sync(database, dynamics, crm_taxonomy)
    await sync.run(NOW)
    cid = await _customer_id(database, a)
    async with database.unit_of_work() as uow:
        for name in ("VIP客户", "高频咨询", "今日已联系", "投诉风险"):
            await apply_tag(uow, crm_taxonomy, TaggingRules(), cid, name, actor="u1", source=Source.MANUAL, now=NOW)
    report = await sync.run(NOW + timedelta(minutes=5))
    await sync.connector.close()
    assert report.error is None and report.written == 1
    assert sorted(fake.labels("accounts", a)) == ["VIP客户", "高频咨询"]


async def test_crm_wins_for_crm_mastered_dimensions_and_chat_edits_are_refused(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司", ["华东"])
    sync = _sync(database, dynamics, crm_taxonomy)
    await sync.run(NOW)
    cid = await _customer_id(database, a)
    async with database.unit_of_work() as uow:
        with pytest.raises(PolicyRefusal, match="come from the CRM"):
            await apply_tag(
                uow, crm_taxonomy, TaggingRules(), cid, "零售电商", actor="u1", source=Source.MANUAL, now=NOW
            )
        with pytest.raises(PolicyRefusal, match="change them in the CRM"):
            await remove_tag(uow, crm_taxonomy, cid, "华东", actor="u1", source=Source.MANUAL, now=NOW)
        # an import (not chat) may still change it: that is a Kebiao-side change the CRM then overrules
        await remove_tag(uow, crm_taxonomy, cid, "华东", actor="importer", source=Source.IMPORT, now=NOW)
    fake.update("accounts", a, kb_industry="Retail")
    report = await sync.run(NOW + timedelta(minutes=5))
    await sync.connector.close()
    assert report.conflicts == 1
    assert await _tags(database, a) == {("basic", "华东"), ("basic", "零售电商")}
    async with database.unit_of_work(read_only=True) as uow:
        events = await uow.events.for_customer(cid, 0, 20)
    overruled = [e for e in events if e.evidence.get("conflict")]
    assert overruled and all(e.actor == "crm:dynamics" for e in overruled)


async def test_crm_side_change_of_a_kebiao_mastered_dimension_is_overruled_and_recorded(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司")
    sync = _sync(database, dynamics, crm_taxonomy)
    await sync.run(NOW)
    cid = await _customer_id(database, a)
    async with database.unit_of_work() as uow:
        await apply_tag(uow, crm_taxonomy, TaggingRules(), cid, "VIP客户", actor="u1", source=Source.MANUAL, now=NOW)
    await sync.run(NOW + timedelta(minutes=1))
    assert fake.labels("accounts", a) == ["VIP客户"]
    fake.update("accounts", a, kb_tags=fake.values(["普通客户"]))  # someone changes it in the CRM
    report = await sync.run(NOW + timedelta(minutes=2))
    await sync.connector.close()
    assert report.conflicts == 2 and fake.labels("accounts", a) == ["VIP客户"]
    assert ("value", "VIP客户") in await _tags(database, a)
    async with database.unit_of_work(read_only=True) as uow:
        events = await uow.events.for_customer(cid, 0, 20)
    recorded = {(e.tag, e.kind.value) for e in events if e.evidence.get("conflict")}
    assert recorded == {("普通客户", "added"), ("VIP客户", "removed")}


async def test_crm_down_keeps_every_write_and_a_later_run_delivers_it(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司")
    store = SqlCrmStore(database.engine)
    sync = _sync(database, dynamics, crm_taxonomy)
    await sync.run(NOW)
    cid = await _customer_id(database, a)
    async with database.unit_of_work() as uow:
        await apply_tag(uow, crm_taxonomy, TaggingRules(), cid, "VIP客户", actor="u1", source=Source.MANUAL, now=NOW)
    fake.down = True
    down = await sync.run(NOW + timedelta(minutes=1))
    assert down.error is not None and "dynamics" in down.error and "\n" not in down.error
    state = await store.state("dynamics")
    assert state is not None and state.last_error == down.error
    fake.down = False
    await store.mark_from_events("dynamics", ["value"], NOW, 100)
    assert (await store.pending("dynamics"))[0] == 1
    later = await sync.run(NOW + timedelta(days=1))
    await sync.connector.close()
    assert later.error is None and later.written == 1 and fake.labels("accounts", a) == ["VIP客户"]
    assert await store.pending("dynamics") == (0, 0)


async def test_a_crash_mid_sync_resumes_from_the_last_committed_page(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    fake = dynamics.fake
    ids = [fake.add("accounts", f"公司{i}", ["华东"]) for i in range(5)]
    sync = _sync(database, dynamics, crm_taxonomy)
    real = sync.connector.changes
    calls = 0

    async def crash_on_third(cursor: str | None, fields: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionResetError("killed")
        return await real(cursor, fields)  # type: ignore[arg-type]

    sync.connector.changes = crash_on_third  # type: ignore[method-assign,assignment]
    with pytest.raises(ConnectionResetError):
        await sync.run(NOW)
    store = SqlCrmStore(database.engine)
    state = await store.state("dynamics")
    assert state is not None and state.records == 4  # two pages of two, committed with their cursor
    assert state.last_error is not None and "ConnectionResetError" in state.last_error
    sync.connector.changes = real  # type: ignore[method-assign]
    # a replica killed while holding the lease: the others wait until it lapses
    assert await store.acquire("dynamics", "replica-killed", NOW, NOW + timedelta(minutes=5))
    other = _sync(database, dynamics, crm_taxonomy, owner="replica-b")
    assert (await other.run(NOW + timedelta(minutes=1))).busy
    report = await other.run(NOW + timedelta(minutes=10))
    await sync.connector.close()
    await other.connector.close()
    assert report.error is None and report.records == 1
    for crm_id in ids:
        assert await _tags(database, crm_id) == {("basic", "华东")}


async def test_deleted_and_merged_records_keep_the_customer_and_mark_the_link(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司", ["华东"])
    b = fake.add("accounts", "乙公司")
    sync = _sync(database, dynamics, crm_taxonomy)
    await sync.run(NOW)
    fake.update("accounts", a, merged=True, _masterid_value=b)
    await sync.run(NOW + timedelta(minutes=1))
    cid_b = await _customer_id(database, b)
    async with database.unit_of_work() as uow:
        await apply_tag(uow, crm_taxonomy, TaggingRules(), cid_b, "VIP客户", actor="u1", source=Source.MANUAL, now=NOW)
    del fake.rows["accounts"][b]
    report = await sync.run(NOW + timedelta(minutes=2))
    await sync.connector.close()
    assert report.unlinked == 1 and report.error is None
    async with SqlCrmStore(database.engine).unit_of_work(read_only=True) as uow:
        links = await uow.crm.links("dynamics", [await _customer_id(database, a), cid_b])
    states = {link.crm_id: (link.state, link.merged_into) for link in links.values()}
    assert states == {a: (LinkState.MERGED, b), b: (LinkState.DELETED, None)}
    assert await _tags(database, a) == {("basic", "华东")}  # customer and tags kept


async def test_dry_run_changes_nothing(database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy) -> None:
    fake = dynamics.fake
    fake.add("accounts", "甲公司", ["华东"])
    sync = _sync(database, dynamics, crm_taxonomy)
    report = await sync.run(NOW, dry_run=True)
    await sync.connector.close()
    assert report.records == 1 and report.created == 1 and report.added == 1
    async with database.unit_of_work(read_only=True) as uow:
        assert await uow.customers.find_exact("甲公司") == []
    state = await SqlCrmStore(database.engine).state("dynamics")
    assert state is not None and state.cursor is None and state.last_ok_at is None and state.lease_owner is None


async def test_bad_field_mapping_stops_before_writing_anything(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    from tagging.loader import load_taxonomy_text
    from tests.crm.conftest import TAXONOMY

    dynamics.fake.add("accounts", "甲公司", ["华东"])
    broken = load_taxonomy_text(TAXONOMY.replace("kb_industry:", "kb_sector:"), source="crm.yaml")
    sync = _sync(database, dynamics, broken)
    report = await sync.run(NOW)
    await sync.connector.close()
    assert report.error is not None and "field kb_sector does not exist" in report.error and report.records == 0
    async with database.unit_of_work(read_only=True) as uow:
        assert await uow.customers.find_exact("甲公司") == []
    assert SyncOptions().retry_after(3) == timedelta(minutes=8)


async def test_only_taxonomy_assignments_are_written_back_never_personal_or_session_or_managers_only(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    from core.ports import NewAssignment
    from core.records import NewEvent
    from core.types import EventKind

    fake = dynamics.fake
    fake.options[100000009] = "我的重点"  # the CRM would accept it: only Kebiao's selection keeps it out
    a = fake.add("accounts", "甲公司")
    sync = _sync(database, dynamics, crm_taxonomy)
    await sync.run(NOW)
    cid = await _customer_id(database, a)
    personal = [("value", "我的重点"), ("personal", "VIP客户"), ("personal:u1", "普通客户")]
    async with database.unit_of_work() as uow:
        await uow.assignments.insert_many(
            [NewAssignment(cid, d, t, Source.MANUAL, "u1", NOW, None) for d, t in personal]
        )
        await uow.events.append_many(
            [NewEvent(cid, d, t, EventKind.ADDED, "u1", Source.MANUAL, NOW, {}) for d, t in personal]
        )
        for name in ("高频咨询", "今日已联系", "投诉风险"):
            await apply_tag(uow, crm_taxonomy, TaggingRules(), cid, name, actor="u1", source=Source.MANUAL, now=NOW)
    report = await sync.run(NOW + timedelta(minutes=5))
    assert report.error is None and report.written == 1
    assert fake.labels("accounts", a) == ["高频咨询"]
    # with managers-only write-back configured, 投诉风险 goes too; personal and session tags still never do
    managers = CrmSync(
        SqlCrmStore(database.engine),
        sync.connector,
        lambda: crm_taxonomy,
        TaggingRules(),
        "replica-a",
        SyncOptions(write_managers_only=True),
    )
    await managers.run(NOW + timedelta(minutes=10), full=True)
    await sync.connector.close()
    assert sorted(fake.labels("accounts", a)) == ["投诉风险", "高频咨询"]


async def test_basic_attributes_come_in_on_every_sync_where_rules_and_customers_read_them(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    from core.crm.port import AttributeField
    from core.records import CustomerDraft
    from core.rules.engine import field_value
    from storage.rules import SqlRuleFacts

    fake = dynamics.fake
    a = fake.add("accounts", "甲公司", industrycode=12, numberofemployees=1200, address1_stateorprovince="上海")
    c = fake.add("contacts", "张三", accountrolecode=3, jobtitle="采购经理", address1_stateorprovince="江苏")
    attributes = (
        AttributeField("industry", "account", "industrycode"),
        AttributeField("size", "account", "numberofemployees"),
        AttributeField("region", "", "address1_stateorprovince"),
        AttributeField("role", "contact", "accountrolecode"),
        AttributeField("职位", "contact", "jobtitle"),
    )
    connector = dynamics.connector(attributes=attributes)
    sync = CrmSync(SqlCrmStore(database.engine), connector, lambda: crm_taxonomy, TaggingRules(), "replica-a")
    await sync.run(NOW)
    async with database.unit_of_work(read_only=True) as uow:
        (account,) = await uow.customers.find_exact(a)
        (contact,) = await uow.customers.find_exact(c)
    assert dict(account.attributes) == {"industry": "Manufacturing", "size": "1200"} and account.region == "上海"
    assert dict(contact.attributes) == {"role": "Influencer", "职位": "采购经理"} and contact.region == "江苏"
    # later syncs keep them current; attributes from elsewhere (a customer file) stay untouched
    async with database.unit_of_work() as uow:
        draft = CustomerDraft(
            name=account.name, region=account.region, crm_id=a, attributes={**account.attributes, "累计消费": "6000"}
        )
        await uow.customers.update(account.id, draft, NOW)
    fake.update("accounts", a, industrycode=27, numberofemployees=None, address1_stateorprovince=None)
    report = await sync.run(NOW + timedelta(minutes=5))
    await connector.close()
    assert report.attributes == 1
    async with database.engine.connect() as conn:
        (facts,) = await SqlRuleFacts(conn).facts([account.id], [], NOW)
    assert field_value(facts, "industry") == "Retail" and field_value(facts, "size") is None
    assert field_value(facts, "region") == "上海"  # an empty CRM region keeps the one Kebiao has
    assert field_value(facts, "累计消费") == "6000"
