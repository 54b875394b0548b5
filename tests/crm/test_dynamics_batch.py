"""Dataverse writes in `$batch` change sets, the one-by-one fallback, and tags kept in a related table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core.crm.port import CrmError, CrmRecordGone, CrmRef, TagWrite
from core.crm.sync import CrmSync
from core.tags.assignments import TaggingRules, apply_tag
from core.types import Source
from crm.dynamics.batch import Operation, decode, encode
from crm.dynamics.connector import DynamicsConnector, TagTable
from storage.crm import SqlCrmStore
from storage.database import Database
from tagging.taxonomy import Taxonomy
from tests.crm import fake_dynamics as fd
from tests.crm.conftest import DynamicsFixture

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TABLE = TagTable(
    fd.TAG_SET, fd.TAG_KEY, fd.TAG_NAME, {"account": fd.TAG_LINKS["accounts"], "contact": fd.TAG_LINKS["contacts"]}
)


def _patches(fake: fd.FakeDataverse) -> list[str]:
    return [m for m, q in fake.requests if m in ("PATCH", "POST", "DELETE") and "$batch" not in q]


async def _writes(conn: DynamicsConnector, ids: list[str], kind: str = "account") -> list[TagWrite]:
    out = []
    for rid in ids:
        record = await conn.get(CrmRef(rid, kind))
        assert record is not None
        out.append(TagWrite(record, ("VIP客户",), ("制造业",)))
    return out


def test_batch_bodies_follow_the_multipart_change_set_shape() -> None:
    ctype, body = encode([Operation("PATCH", "https://x/api/data/v9.2/accounts(1)", {"a": 1}, {"If-Match": "*"})])
    text = body.decode()
    boundary = ctype.split("boundary=")[1]
    assert ctype.startswith("multipart/mixed; boundary=batch_") and text.startswith(f"--{boundary}\r\n")
    assert "Content-Type: multipart/mixed; boundary=changeset_" in text and "Content-ID: 1\r\n" in text
    assert "PATCH https://x/api/data/v9.2/accounts(1) HTTP/1.1\r\nIf-Match: *\r\n" in text
    assert text.rstrip().endswith(f"--{boundary}--")
    with pytest.raises(ValueError, match="multipart"):
        decode("application/json", "{}")


async def test_several_writes_go_in_one_batch_change_set(dynamics: DynamicsFixture) -> None:
    fake = dynamics.fake
    ids = [fake.add("accounts", f"公司{i}", ["制造业", "华东"]) for i in range(3)]
    conn = dynamics.connector()
    try:
        await conn.check([])
        results = await conn.write_many(await _writes(conn, ids))
    finally:
        await conn.close()
    assert results == [None, None, None] and fake.batches == [3] and _patches(fake) == []
    assert all(sorted(fake.labels("accounts", rid)) == ["VIP客户", "华东"] for rid in ids)


async def test_a_failed_batch_falls_back_to_single_patches_keeping_each_error(dynamics: DynamicsFixture) -> None:
    fake = dynamics.fake
    ids = [fake.add("accounts", f"公司{i}", ["制造业"]) for i in range(3)]
    conn = dynamics.connector()
    try:
        await conn.check([])
        writes = await _writes(conn, ids)
        del fake.rows["accounts"][ids[1]]  # deleted in the CRM after it was read: the change set rolls back
        results = await conn.write_many(writes)
        assert fake.batches == [3] and conn.batch_fallbacks == 1 and _patches(fake) == ["PATCH"] * 3
        assert results[0] is None and results[2] is None and isinstance(results[1], CrmRecordGone)
        assert fake.labels("accounts", ids[0]) == ["VIP客户"] == fake.labels("accounts", ids[2])
        fake.reject_batches, fake.requests = True, []  # a service error on the batch itself
        again = await conn.write_many(await _writes(conn, [ids[0], ids[2]]))
        assert again == [None, None] and conn.batch_fallbacks == 2 and _patches(fake) == ["PATCH"] * 2
        fake.reject_batches, fake.down = False, True  # the CRM is down: every write keeps a retryable error
        down = await conn.write_many(writes[::2])
        assert all(isinstance(e, CrmError) and e.retryable for e in down)
    finally:
        await conn.close()


async def test_tags_in_a_related_table_are_read_by_expand_and_written_as_rows(dynamics: DynamicsFixture) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司")
    b = fake.add("accounts", "乙公司")
    c = fake.add("contacts", "张三")
    fake.add_tag_row("accounts", a, "制造业")
    fake.add_tag_row("accounts", a, "华东")
    fake.add_tag_row("contacts", c, "VIP客户")
    conn = dynamics.connector(tags_table=TABLE)
    try:
        await conn.check(["kb_industry"])
        assert not any("MultiSelectPicklist" in q for _, q in fake.requests)  # no choice column is needed
        page, seen = None, {}
        while True:
            page = await conn.changes(page.cursor if page else None, [])
            seen.update({r.ref.crm_id: set(r.tags) for r in page.records})
            if page.done:
                break
        assert seen == {a: {"制造业", "华东"}, b: set(), c: {"VIP客户"}}
        writes = [
            TagWrite(await conn.get(CrmRef(a, "account")), ("VIP客户",), ("制造业",)),  # type: ignore[arg-type]
            TagWrite(await conn.get(CrmRef(b, "account")), ("普通客户", "高频咨询"), ()),  # type: ignore[arg-type]
        ]
        assert await conn.write_many(writes) == [None, None] and fake.batches == [4]
        assert fake.table_labels("accounts", a) == ["VIP客户", "华东"]
        assert fake.table_labels("accounts", b) == ["普通客户", "高频咨询"]
        await conn.write_tags(CrmRef(c, "contact"), [], ["VIP客户"])  # one record: plain DELETE, no batch
        assert fake.table_labels("contacts", c) == [] and fake.batches == [4] and _patches(fake) == ["DELETE"]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            replace(TABLE, set_name="kb_nosuch"),
            "no table with entity set kb_nosuch; set KEBIAO_CRM_DYNAMICS_TAGS_TABLE",
        ),
        (replace(TABLE, name="kb_label"), "field kb_label does not exist"),
        (
            replace(TABLE, links={**TABLE.links, "contact": ("kb_contactid", "kb_wrong")}),
            "read contacts: field kb_wrong does not exist",
        ),
    ],
)
async def test_a_misnamed_related_table_is_named_before_anything_is_read(
    dynamics: DynamicsFixture, table: TagTable, expected: str
) -> None:
    conn = dynamics.connector(tags_table=table)
    try:
        with pytest.raises(CrmError) as caught:
            await conn.check([])
    finally:
        await conn.close()
    assert expected in str(caught.value) and "\n" not in str(caught.value)


async def test_a_sync_writes_pending_customers_in_one_batch(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    fake = dynamics.fake
    ids = [fake.add("accounts", f"公司{i}") for i in range(3)]
    connector = dynamics.connector()
    sync = CrmSync(SqlCrmStore(database.engine), connector, lambda: crm_taxonomy, TaggingRules(), "replica-a")
    await sync.run(NOW)
    async with database.unit_of_work() as uow:
        for rid in ids:
            (customer,) = await uow.customers.find_exact(rid)
            await apply_tag(
                uow, crm_taxonomy, TaggingRules(), customer.id, "VIP客户", actor="u1", source=Source.MANUAL, now=NOW
            )
    fake.requests = []
    report = await sync.run(NOW + timedelta(minutes=5))
    await connector.close()
    assert report.error is None and report.written == 3 and fake.batches == [3] and _patches(fake) == []
    assert all(fake.labels("accounts", rid) == ["VIP客户"] for rid in ids)


async def test_tag_rows_changed_since_the_last_sync_bring_their_records_back(dynamics: DynamicsFixture) -> None:
    fake = dynamics.fake
    a = fake.add("accounts", "甲公司")
    b = fake.add("accounts", "乙公司")
    c = fake.add("contacts", "张三")
    fake.add_tag_row("accounts", a, "华东")
    conn = dynamics.connector(tags_table=TABLE)

    async def drain(cursor: str | None) -> tuple[dict[str, set[str]], str]:
        seen: dict[str, set[str]] = {}
        while True:
            page = await conn.changes(cursor, [])
            seen.update({r.ref.crm_id: set(r.tags) for r in page.records})
            cursor = page.cursor
            if page.done:
                return seen, cursor

    try:
        await conn.check([])
        first, cursor = await drain(None)
        assert first == {a: {"华东"}, b: set(), c: set()}
        assert not any("kb_customertags?" in q and "$filter" in q for _, q in fake.requests)  # watermark only
        fake.clock += timedelta(minutes=1)
        fake.add_tag_row("accounts", b, "制造业")  # neither record's modifiedon moves
        fake.add_tag_row("contacts", c, "VIP客户")
        again, cursor = await drain(cursor)
        assert again[b] == {"制造业"} and again[c] == {"VIP客户"}
        assert any("Microsoft.Dynamics.CRM.In" in q for _, q in fake.requests)
        quiet, _ = await drain(cursor)
        assert set(quiet) <= {b, c}  # `ge` the watermark: only the newest rows' records come again
    finally:
        await conn.close()


async def test_the_crm_going_down_mid_push_keeps_every_claimed_write_for_a_later_batch(
    database: Database, dynamics: DynamicsFixture, crm_taxonomy: Taxonomy
) -> None:
    fake = dynamics.fake
    ids = [fake.add("accounts", f"公司{i}") for i in range(3)]
    connector = dynamics.connector()
    store = SqlCrmStore(database.engine)
    sync = CrmSync(store, connector, lambda: crm_taxonomy, TaggingRules(), "replica-a")
    await sync.run(NOW)
    async with database.unit_of_work() as uow:
        for rid in ids:
            (customer,) = await uow.customers.find_exact(rid)
            await apply_tag(
                uow, crm_taxonomy, TaggingRules(), customer.id, "VIP客户", actor="u1", source=Source.MANUAL, now=NOW
            )
    real_get, calls = connector.get, 0

    async def down_on_second(ref: CrmRef) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise CrmError("dynamics", "read account", "cannot reach the CRM", "try again later", retryable=True)
        return await real_get(ref)

    connector.get = down_on_second  # type: ignore[method-assign,assignment]
    report = await sync.run(NOW + timedelta(minutes=5))
    assert report.error is not None and "cannot reach" in report.error and report.written == 0
    assert await store.pending("dynamics") == (3, 3) and fake.batches == []
    connector.get = real_get  # type: ignore[method-assign]
    later = await sync.run(NOW + timedelta(hours=2))
    await connector.close()
    assert later.error is None and later.written == 3 and fake.batches == [3]
    assert await store.pending("dynamics") == (0, 0)
