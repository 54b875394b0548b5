"""Churn scoring reads a page's users, customers, references and acknowledgements in one statement each.

PostgreSQL binds each id list as one array (`= ANY(:ids)`), SQLite as an IN list: the rows must be the
same either way, for no id, one id and many (missing and repeated ids included).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from sqlalchemy import event

from core.alerts.jobs import score_churn
from core.alerts.ports import AlertStore
from core.alerts.selection import ChurnRules
from core.records import CustomerDraft
from core.types import Role, Source, User
from storage import tables as t
from storage.database import Database
from tests.alerts.conftest import NOW, seed
from tests.alerts.test_jobs import _jobs

RULES = ChurnRules()
SINCE = NOW - timedelta(days=RULES.recent_days)


@contextmanager
def _statements(database: Database) -> Iterator[list[str]]:
    """The SQL text of every statement the engine sends while the block runs."""
    sent: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


async def _at_risk_customers(database: Database, owners: list[str]) -> list[int]:
    """One customer per owner whose contract ends within the window and who was silent for a year."""
    ids = []
    async with database.unit_of_work() as uow:
        for owner in owners:
            customer = await uow.customers.add(
                CustomerDraft(f"{owner}的客户", owner=owner, region="华东", contract_end=date(2025, 3, 20)),
                NOW - timedelta(days=400),
            )
            ids.append(customer.id)
    return ids


async def test_users_are_read_by_id_in_one_lookup(database: Database) -> None:
    async with database.unit_of_work() as uow:
        for name in ("甲", "乙", "丙"):
            await uow.users.save(User(name, Role.AGENT, display_name=f"{name}先生"), NOW)
    async with database.unit_of_work() as uow:
        assert await uow.users.get_many([]) == {}
        assert await uow.users.get_many(["乙"]) == {"乙": await uow.users.get("乙")}
        many = await uow.users.get_many(["丙", "甲", "无此人", "甲", "乙"])
        assert many == {name: await uow.users.get(name) for name in ("甲", "乙", "丙")}
        assert many["丙"] == User("丙", Role.AGENT, display_name="丙先生")


async def test_a_page_of_churn_alerts_reads_its_owners_in_one_statement(database: Database, store: AlertStore) -> None:
    seeded = await seed(database)
    owners = [f"agent{i}" for i in range(6)]
    async with database.unit_of_work() as uow:
        for owner in owners[:4]:
            await uow.users.save(User(owner, Role.AGENT, display_name=f"名字{owner}"), NOW)
    await _at_risk_customers(database, owners)
    with _statements(database) as sent:
        report = await score_churn(_jobs(store, seeded["taxonomy"], {}), NOW)
    user_reads = [s for s in sent if "FROM users" in s and "WHERE users.role" not in s]  # managers: once
    assert report.at_risk == 7 and len(user_reads) == 1  # one page: one read for all its owners
    async with store.unit_of_work() as uow:
        rows = await uow.outbox.claim(NOW + timedelta(days=1), 100)
    names = {m.payload["owner"]: m.payload.get("owner_name", "") for m in rows}
    assert names == {**{o: f"名字{o}" for o in owners[:4]}, "agent4": "", "agent5": "", "小张": ""}


async def test_facts_for_gives_the_same_rows_for_none_one_and_many_ids(database: Database, store: AlertStore) -> None:
    seeded = await seed(database)
    ids = [seeded["yunfan"], seeded["haiyue"], *await _at_risk_customers(database, ["a", "b"])]
    async with store.unit_of_work() as uow:
        await uow.assignments.insert_active(
            ids[2], "risk", "售后工单", Source.MANUAL, "a", NOW - timedelta(days=2), None
        )
        await uow.activity.record_message(ids[3], "wecom", NOW - timedelta(days=40))
    watched, negative = RULES.watched_tags, RULES.negative_dimension
    async with store.unit_of_work() as uow:
        everyone = await uow.scans.customer_facts(0, SINCE, watched, negative, 100)
    async with store.unit_of_work() as uow:
        assert await uow.scans.facts_for([], SINCE, watched, negative) == []
        one = await uow.scans.facts_for([ids[2]], SINCE, watched, negative)
        many = await uow.scans.facts_for([ids[3], 999_999, *ids, ids[0]], SINCE, watched, negative)
    assert one == [f for f in everyone if f.customer_id == ids[2]] and one[0].watched_tags
    assert many == everyone and len(many) == 4
    assert next(f for f in many if f.customer_id == ids[3]).last_contact_at is not None


async def test_references_and_acknowledgements_by_id_list(database: Database, store: AlertStore) -> None:
    async with database.engine.begin() as conn:
        await conn.execute(
            t.conversation_references.insert(),
            [
                {"channel": ch, "user_key": user, "reference": {}, "updated_at": NOW}
                for ch, user in (("msteams", "甲"), ("wecom", "甲"), ("msteams", "乙"))
            ],
        )
    async with store.unit_of_work() as uow:
        await uow.acknowledgements.record("churn:1:x", "甲", "ack", None, NOW)
        await uow.acknowledgements.record("churn:2", "乙", "snooze", NOW + timedelta(days=1), NOW)
        await uow.acknowledgements.record("churn:3", "乙", "snooze", NOW - timedelta(days=1), NOW)
    async with store.unit_of_work() as uow:
        scans, acks = uow.scans, uow.acknowledgements
        assert await scans.reference_channels([]) == {}
        assert await scans.reference_channels(["乙"]) == {"乙": {"msteams"}}
        assert await scans.reference_channels(["丙", "乙", "甲"]) == {"甲": {"msteams", "wecom"}, "乙": {"msteams"}}
        assert await acks.suppressed_many([], ["churn:2"], NOW) == set()
        assert await acks.suppressed_many(["乙"], ["churn:2"], NOW) == {("乙", "churn:2")}
        keys = ["churn:1:x", "churn:2", "churn:3", "churn:4"]
        assert await acks.suppressed_many(["甲", "乙", "丙", "甲"], keys, NOW) == {
            ("甲", "churn:1:x"),
            ("乙", "churn:2"),
        }
        assert await acks.suppressed("乙", [], NOW) == set()
        assert await acks.suppressed("乙", keys, NOW) == {"churn:2"}
