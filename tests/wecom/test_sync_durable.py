"""Durable tag pushes: a failed mark_tag survives a restart, success clears it, replicas never push twice."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

import aiohttp
import pytest
from alembic import command
from sqlalchemy import inspect

from bots.wecom.background import Background
from bots.wecom.client import WeComClient
from bots.wecom.sync import WeComTagSync, backoff
from core.types import Source
from storage.channels import SqlChannelStore
from storage.database import Database, _alembic_config, head_revision
from storage.sync_pending import SqlPendingTagPushes
from tagging.taxonomy import Taxonomy
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi
from tests.wecom.sync_support import (
    NOW,
    TAG,
    Clock,
    add_customer,
    apply,
    known_corp_tag,
    no_sleep,
    reopen,
)


def _sync(
    session: aiohttp.ClientSession,
    fake: FakeWeComApi,
    database: Database,
    taxonomy: Taxonomy,
    background: Background,
    clock: Clock,
    **kw: object,
) -> WeComTagSync:
    client = WeComClient(session, CORP_ID, SECRET, AGENT_ID, fake.api_base, sleep=no_sleep)
    return WeComTagSync(
        client,
        database,
        SqlChannelStore(database.engine),
        lambda: taxonomy,
        background,
        SqlPendingTagPushes(database.engine),
        retry_delays=(3600.0,),
        clock=clock,
        rng=random.Random(7),
        **kw,  # type: ignore[arg-type]
    )


async def _until_failed_once(pending: SqlPendingTagPushes, customer_id: int) -> None:
    """Wait (bounded) for the background push to record its failure."""
    for _ in range(500):
        row = await pending.get(customer_id)
        if row is not None and row.attempts >= 1:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the failed push was never recorded")


async def test_failed_push_survives_a_restart_and_is_delivered_after_recovery(
    database: Database,
    sample_taxonomy: Taxonomy,
    fake_wecom: FakeWeComApi,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock(NOW)
    background = Background()
    sync = _sync(session, fake_wecom, database, sample_taxonomy, background, clock)
    customer = await add_customer(database)
    change = await apply(database, sample_taxonomy, customer)
    fake_wecom.fail("externalcontact/add_corp_tag", 60011, "no privilege to access/modify", times=1)
    await sync.tags_changed(customer.id, [change])
    pending = SqlPendingTagPushes(database.engine)
    await _until_failed_once(pending, customer.id)
    row = await pending.get(customer.id)
    assert row is not None and row.attempts == 1 and "60011" in (row.last_error or "")
    assert NOW + timedelta(minutes=45) <= row.next_attempt_at <= NOW + timedelta(hours=1)  # jittered backoff
    assert "retry 1" in caplog.text and SECRET not in caplog.text
    await background.close(timeout=0)  # the process stops: the in-memory wake-up timer is gone

    restarted = await reopen(database)
    try:
        clock2 = Clock(NOW + timedelta(minutes=10))
        sync2 = _sync(session, fake_wecom, restarted, sample_taxonomy, Background(), clock2)
        report = await sync2.drain_pending()
        assert report.claimed == 0  # not due yet: the backoff is kept across the restart
        clock2.now = NOW + timedelta(hours=2)
        report = await sync2.drain_pending()
        assert (report.pushed, report.failed) == (1, 0)
        assert fake_wecom.customer_tags[("lisi", "wmWANGFANG01")]  # delivered once WeCom recovered
        assert await SqlPendingTagPushes(restarted.engine).count() == 0
    finally:
        await restarted.close()


async def test_success_removes_the_row(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    background = Background()
    sync = _sync(session, fake_wecom, database, sample_taxonomy, background, Clock(NOW))
    pending = SqlPendingTagPushes(database.engine)
    customer = await add_customer(database)
    change = await apply(database, sample_taxonomy, customer)
    await sync.tags_changed(customer.id, [change])
    assert await pending.get(customer.id) is not None  # recorded before the push runs
    await background.drain()
    assert await pending.count() == 0
    assert len(fake_wecom.calls_to("externalcontact/mark_tag")) == 1


async def test_a_change_whose_push_never_ran_is_pushed_after_the_lease(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    tag_id = await known_corp_tag(fake_wecom, database)
    crashed = Background()
    await crashed.close()  # spawn is refused: as if the process died right after the change was committed
    clock = Clock(NOW)
    sync = _sync(session, fake_wecom, database, sample_taxonomy, crashed, clock)
    customer = await add_customer(database)
    await sync.tags_changed(customer.id, [await apply(database, sample_taxonomy, customer)])
    assert fake_wecom.calls_to("externalcontact/mark_tag") == []
    assert (await sync.drain_pending()).claimed == 0  # leased to the push that was about to run
    clock.now = NOW + timedelta(minutes=6)
    assert (await sync.drain_pending()).pushed == 1
    assert fake_wecom.customer_tags[("lisi", "wmWANGFANG01")] == {tag_id}


async def test_removed_tags_are_recomputed_from_the_event_log(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    """A retry pushes the current state: a tag removed while WeCom was failing is removed, not re-added."""
    from core.tags.assignments import remove_tag

    tag_id = await known_corp_tag(fake_wecom, database)
    fake_wecom.customer_tags[("lisi", "wmWANGFANG01")] = {tag_id}
    clock = Clock(NOW)
    sync = _sync(session, fake_wecom, database, sample_taxonomy, Background(), clock)
    customer = await add_customer(database)
    await apply(database, sample_taxonomy, customer)
    async with database.unit_of_work() as uow:
        await remove_tag(uow, sample_taxonomy, customer.id, TAG, actor="lisi", source=Source.MANUAL, now=NOW)
    await SqlPendingTagPushes(database.engine).mark(customer.id, NOW, NOW)
    assert (await sync.drain_pending()).pushed == 1
    (mark,) = fake_wecom.calls_to("externalcontact/mark_tag")
    assert mark.body and mark.body["remove_tag"] == [tag_id] and mark.body["add_tag"] == []
    assert fake_wecom.customer_tags[("lisi", "wmWANGFANG01")] == set()


async def test_customer_without_wecom_identity_is_dropped_with_a_log_line(
    database: Database,
    sample_taxonomy: Taxonomy,
    fake_wecom: FakeWeComApi,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    background = Background()
    sync = _sync(session, fake_wecom, database, sample_taxonomy, background, Clock(NOW))
    customer = await add_customer(database, name="赵磊", external="wmZHAOLEI01", owner="")
    await sync.tags_changed(customer.id, [await apply(database, sample_taxonomy, customer)])
    await background.drain()
    assert await SqlPendingTagPushes(database.engine).count() == 0
    assert f"customer {customer.id} dropped from the push queue" in caplog.text
    assert fake_wecom.calls_to("externalcontact/mark_tag") == []


async def test_two_concurrent_drains_push_each_customer_once(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    await known_corp_tag(fake_wecom, database)
    pending = SqlPendingTagPushes(database.engine)
    names = ["王芳", "李娜", "张伟", "刘洋", "陈静", "杨帆", "黄磊", "周敏"]
    for i, name in enumerate(names):
        customer = await add_customer(database, name=name, external=f"wmKEHU{i:02d}")
        await apply(database, sample_taxonomy, customer)
        await pending.mark(customer.id, NOW, NOW)
    replica = await reopen(database)
    try:
        # One client for both replicas: the fake honours only the newest access token (WeCom honours several),
        # so two clients would see each other's token refreshes as extra, rejected mark_tag calls.
        client = WeComClient(session, CORP_ID, SECRET, AGENT_ID, fake_wecom.api_base, sleep=no_sleep)
        first, second = (
            WeComTagSync(
                client,
                db,
                SqlChannelStore(db.engine),
                lambda: sample_taxonomy,
                Background(),
                SqlPendingTagPushes(db.engine),
                clock=Clock(NOW),
                batch=1,
            )
            for db in (database, replica)
        )
        one, two = await asyncio.gather(first.drain_pending(), second.drain_pending())
    finally:
        await replica.close()
    marks = [c.body["external_userid"] for c in fake_wecom.calls_to("externalcontact/mark_tag") if c.body]
    assert sorted(marks) == sorted(f"wmKEHU{i:02d}" for i in range(len(names)))  # each exactly once
    assert one.pushed + two.pushed == len(names)
    assert await pending.count() == 0


async def test_push_all_drains_pending_rows_even_before_they_are_due(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    tag_id = await known_corp_tag(fake_wecom, database)
    pending = SqlPendingTagPushes(database.engine)
    customer = await add_customer(database)
    await apply(database, sample_taxonomy, customer)
    await pending.mark(customer.id, NOW, NOW)
    await pending.failed(customer.id, NOW, NOW + timedelta(hours=1), "WeCom API externalcontact/mark_tag failed")
    sync = _sync(session, fake_wecom, database, sample_taxonomy, Background(), Clock(NOW))
    pushed, failed = await sync.push_all()
    assert failed == 0 and pushed >= 1
    assert await pending.count() == 0
    assert fake_wecom.customer_tags[("lisi", "wmWANGFANG01")] == {tag_id}


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(3)
    delays = (30.0, 120.0, 600.0, 1800.0)
    assert 22.5 <= backoff(1, delays, rng) <= 30.0
    assert 90.0 <= backoff(2, delays, rng) <= 120.0
    assert all(1350.0 <= backoff(n, delays, rng) <= 1800.0 for n in (4, 5, 50))
    assert len({backoff(9, delays, rng) for _ in range(20)}) > 1


async def test_migration_0002_to_0003(database: Database) -> None:
    def downgrade(connection: object) -> None:
        command.downgrade(_alembic_config(connection), "0002")  # type: ignore[arg-type]

    def tables(connection: object) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with database.engine.begin() as conn:
        await conn.run_sync(downgrade)
    assert await database.current_revision() == "0002"
    async with database.engine.connect() as conn:
        assert "wecom_sync_pending" not in await conn.run_sync(tables)
    customer = await add_customer(database)
    await database.upgrade()
    assert await database.current_revision() == head_revision()  # 0003 and every later migration
    async with database.engine.connect() as conn:
        assert "wecom_sync_pending" in await conn.run_sync(tables)
    pending = SqlPendingTagPushes(database.engine)
    row = await pending.mark(customer.id, NOW, NOW)
    assert row is not None and row.generation == 1 and row.attempts == 0
    async with database.unit_of_work() as uow:
        assert await uow.customers.get(customer.id) is not None  # data kept across the upgrade
